//! Every WGSL file parses and validates with naga; a failure names the file and line.

use naga::valid::{Capabilities, ValidationFlags, Validator};

fn validate(shader: &asgd_shaders::Shader) -> Result<(), String> {
    validate_with(shader, Capabilities::empty())
}

/// Validates with `caps`: the generated subgroup kernels need the subgroup capability, as a
/// device without subgroups would refuse them.
fn validate_with(shader: &asgd_shaders::Shader, caps: Capabilities) -> Result<(), String> {
    use naga::valid::{ShaderStages, SubgroupOperationSet};
    let module = naga::front::wgsl::parse_str(shader.source)
        .map_err(|e| e.emit_to_string_with_path(shader.source, shader.name))?;
    let mut validator = Validator::new(ValidationFlags::all(), caps);
    if caps.contains(Capabilities::SUBGROUP) {
        validator.subgroup_stages(ShaderStages::COMPUTE).subgroup_operations(SubgroupOperationSet::all());
    }
    validator.validate(&module).map_err(|e| e.emit_to_string_with_path(shader.source, shader.name))?;
    Ok(())
}

#[test]
fn every_shader_validates() {
    let failures: Vec<String> = asgd_shaders::ALL.iter().filter_map(|s| validate(s).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_wgsl_file_is_listed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".wgsl") {
            assert!(
                asgd_shaders::ALL.iter().any(|s| s.name == name),
                "{name} is in shaders/src but not in asgd_shaders::ALL"
            );
        }
    }
}

#[test]
fn a_broken_shader_is_reported_with_file_and_line() {
    let broken = asgd_shaders::Shader {
        name: "broken.wgsl",
        source: "@compute @workgroup_size(1)\nfn main() {\n    let x: f32 = 1u;\n}\n",
    };
    let err = validate(&broken).unwrap_err();
    assert!(err.contains("broken.wgsl:3"), "no file:line in {err}");
}

fn leak(name: String, source: String) -> asgd_shaders::Shader {
    asgd_shaders::Shader { name: Box::leak(name.into_boxed_str()), source: Box::leak(source.into_boxed_str()) }
}

fn layout(bits: u32) -> asgd_shaders::MatmulLayout {
    asgd_shaders::MatmulLayout {
        trans_a: bits & 1 != 0,
        trans_b: bits & 2 != 0,
        vec_a: bits & 4 != 0,
        vec_b: bits & 8 != 0,
    }
}

#[test]
fn every_generated_subgroup_and_bias_matmul_validates() {
    use asgd_shaders::{
        register_matmul_bias_source, subgroup_matmul_bias_source, subgroup_matmul_source, RegisterTile, SubgroupTile,
    };
    let mut failures = Vec::new();
    for (rows, cols, lanes) in [(4, 4, 8), (8, 8, 8), (16, 4, 4), (32, 8, 8), (12, 8, 32)] {
        for bits in 0..16u32 {
            let l = layout(bits);
            let block = RegisterTile { rows, cols, threads: 64, threads_x: 32 };
            let tile = SubgroupTile { lanes, block };
            let sg = Capabilities::SUBGROUP;
            let sources = [
                (format!("{}-{}.wgsl", tile.name(), l.name()), subgroup_matmul_source(tile, l), sg),
                (format!("{}-{}-bias.wgsl", tile.name(), l.name()), subgroup_matmul_bias_source(tile, l), sg),
                (
                    format!("{}-{}-bias.wgsl", block.name(), l.name()),
                    register_matmul_bias_source(block, l),
                    Capabilities::empty(),
                ),
            ];
            for (name, source, caps) in sources {
                if let Err(e) = validate_with(&leak(name, source), caps) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Without the capability a subgroup kernel is refused, as a device without subgroups would.
    let tile = SubgroupTile { lanes: 8, block: RegisterTile { rows: 8, cols: 8, threads: 8, threads_x: 8 } };
    let plain = leak("plain".into(), subgroup_matmul_source(tile, layout(0)));
    assert!(validate(&plain).is_err());
}

#[test]
fn every_generated_f16_matmul_validates() {
    use asgd_shaders::{register_matmul_f16_source, RegisterTile};
    let mut failures = Vec::new();
    for (rows, cols) in [(4, 4), (8, 4), (16, 16), (32, 32)] {
        for bits in 0..16u32 {
            let tile = RegisterTile { rows, cols, threads: 64, threads_x: 8 };
            let name = format!("{}-{}-f16.wgsl", tile.name(), layout(bits).name());
            if let Err(e) =
                validate_with(&leak(name, register_matmul_f16_source(tile, layout(bits))), Capabilities::SHADER_FLOAT16)
            {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_generated_register_matmul_validates() {
    use asgd_shaders::{register_matmul_source, MatmulLayout, RegisterTile};
    let mut failures = Vec::new();
    for (rows, cols) in [(4, 4), (8, 4), (4, 8), (12, 8), (32, 32)] {
        for bits in 0..16u32 {
            let layout = MatmulLayout {
                trans_a: bits & 1 != 0,
                trans_b: bits & 2 != 0,
                vec_a: bits & 4 != 0,
                vec_b: bits & 8 != 0,
            };
            let tile = RegisterTile { rows, cols, threads: 64, threads_x: 8 };
            let source = register_matmul_source(tile, layout);
            let name = format!("{}-{}.wgsl", tile.name(), layout.name());
            let shader = asgd_shaders::Shader {
                name: Box::leak(name.into_boxed_str()),
                source: Box::leak(source.into_boxed_str()),
            };
            if let Err(e) = validate(&shader) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_generated_direct_convolution_validates() {
    use asgd_shaders::conv_direct::CONV_WEIGHT_LAYOUT;
    use asgd_shaders::{conv_direct_source, conv_weight_grad_source, ConvPass, DirectConv, DirectWeightGrad};
    let mut shaders = vec![leak("conv_weight_layout.wgsl".into(), CONV_WEIGHT_LAYOUT.into())];
    for (kh, kw, stride, pad) in [(3, 3, 1, 1), (3, 3, 2, 1), (1, 1, 2, 0), (5, 5, 1, 2), (3, 2, 3, 0)] {
        for pass in [ConvPass::Forward, ConvPass::InputGrad] {
            for (chans, lines, cols, bias) in [(4, 1, 6, false), (16, 3, 8, true), (8, 6, 6, false)] {
                let k = DirectConv { pass, kh, kw, stride, pad, chans, lines, cols, bias };
                if k.is_valid() {
                    shaders.push(leak(format!("{}.wgsl", k.name()), conv_direct_source(k)));
                }
            }
        }
        for (rows, chans, cols, vec_dy) in [(4, 1, 3, false), (8, 4, 8, true)] {
            let k = DirectWeightGrad { kh, kw, stride, pad, rows, chans, cols, vec_dy };
            shaders.push(leak(format!("{}.wgsl", k.name()), conv_weight_grad_source(k)));
        }
    }
    let failures: Vec<String> = shaders.iter().filter_map(|s| validate(s).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
