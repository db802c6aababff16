//! The register-blocked matrix product with the loads of A shared by the lanes of a subgroup.
//!
//! Same contract as [`crate::register_matmul`] (bindings, uniform block, `ACCUMULATE`, `SPLIT`,
//! alpha, transposes, and the bias variant), and the same generated block per thread. The lanes
//! of one subgroup lie side by side along the columns of C, so they all need the same values of
//! A at every step of K. In the register kernel each lane loads all of them; here lane `l` loads
//! only every `lanes`-th one (the `l`-th of each group) and hands it to the others with
//! `subgroupBroadcast`, so a thread loads `rows / lanes` values of A per step instead of `rows`.
//!
//! Why this pays on a CPU driver: on lavapipe a subgroup is one SIMD register of 8 lanes and a
//! storage load is a loop over those lanes with a bounds check each, while a broadcast from a
//! fixed lane is a register shuffle. Loads of B are unchanged, so the kernel helps most with
//! tall blocks (many rows, few columns) and with A read as scalars, where a block row costs four
//! loads per four steps of K.
//!
//! The text is unrolled over the lanes, so a kernel is generated for one subgroup size and may
//! only run where subgroups have exactly that size. A thread's place in the tile comes from
//! `subgroup_id` and `subgroup_invocation_id`, not from its local index, so it does not matter
//! how a driver numbers the lanes of a workgroup; it does need full subgroups, which a
//! workgroup that is a multiple of the subgroup size gets on the drivers this was run on.
//! There is no `enable subgroups;` directive: naga 30 rejects it as unimplemented and takes the
//! subgroup built-ins from the device's features instead.

use std::fmt::Write;

use crate::register_matmul::{generate, MatmulLayout, RegisterTile, Variant};

/// The shape of one generated subgroup kernel: a register block per thread and the subgroup
/// size it is unrolled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubgroupTile {
    /// Lanes per subgroup: a power of two from 4 to 128, which must divide `block.threads_x`
    /// (so that a subgroup lies within one row of threads).
    pub lanes: u32,
    /// The block per thread and the threads of a workgroup, as for the register kernel.
    pub block: RegisterTile,
}

impl SubgroupTile {
    /// True when the fields are in range.
    pub fn is_valid(&self) -> bool {
        self.lanes.is_power_of_two()
            && (4..=128).contains(&self.lanes)
            && self.block.is_valid()
            && self.block.threads_x.is_multiple_of(self.lanes)
    }

    /// A short name, `s8r32x8w16x8`: `s`, the lanes, then the register tile's name.
    pub fn name(&self) -> String {
        format!("s{}{}", self.lanes, self.block.name())
    }

    /// Parses [`SubgroupTile::name`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix('s')?;
        let at = rest.find('r')?;
        let t = SubgroupTile { lanes: rest[..at].parse().ok()?, block: RegisterTile::parse(&rest[at..])? };
        t.is_valid().then_some(t)
    }
}

/// The WGSL source of the subgroup kernel for `tile` and `layout`; entry point `matmul`.
/// Needs a device with subgroups of exactly `tile.lanes` lanes.
///
/// Grid: `(ceil(N / tile_cols), ceil(M / tile_rows), splits)`, as [`RegisterTile`] counts them.
pub fn subgroup_matmul_source(tile: SubgroupTile, layout: MatmulLayout) -> String {
    assert!(tile.is_valid(), "invalid subgroup tile {tile:?}");
    generate(tile.block, layout, Variant { share_a: Some(tile.lanes), ..Variant::default() })
}

/// [`subgroup_matmul_source`] with a per-column bias added in the store (binding 4), as
/// [`crate::register_matmul_bias_source`].
pub fn subgroup_matmul_bias_source(tile: SubgroupTile, layout: MatmulLayout) -> String {
    assert!(tile.is_valid(), "invalid subgroup tile {tile:?}");
    generate(tile.block, layout, Variant { share_a: Some(tile.lanes), bias: true, ..Variant::default() })
}

/// Writes the loads of A for one four-step slice of K (inside the K loop, where `q`, `k0`,
/// `r0`, `lane` and the strides are in scope) and returns the names of the values the
/// multiply-adds read, named as the register kernel names its own loads.
///
/// A's values for a slice are `units`: a `vec4` per block row (A read as `vec4` along K), a
/// `vec4` of four rows per step of K (A transposed, read as `vec4` along M), or a scalar per row
/// and step (A read as scalars). Lane `l` loads units `l`, `l + lanes`, ...; unit `u` then
/// reaches every lane from lane `u % lanes`. Lanes past the last unit load it again, which is
/// cheaper than a branch around the load.
pub(crate) fn shared_a_loads(
    w: &mut String,
    rows: usize,
    layout: MatmulLayout,
    lanes: u32,
) -> Box<dyn Fn(usize, usize) -> String> {
    let lanes = lanes as usize;
    let (vec_a, ta) = (layout.vec_a, layout.trans_a);
    let units = if vec_a { rows } else { 4 * rows };
    for j in 0..units.div_ceil(lanes) {
        let _ = writeln!(w, "        let u{j} = min({}u + lane, {}u);", j * lanes, units - 1);
        let load = match (vec_a, ta) {
            (true, false) => format!("a[min(r0 + u{j}, lr) * k4 + q]"),
            (true, true) => format!("a[(k0 + u{j} % 4u) * m4 + min(r0 / 4u + u{j} / 4u, m4 - 1u)]"),
            (false, false) => format!("a[min(r0 + u{j} / 4u, lr) * p.k + k0 + u{j} % 4u]"),
            (false, true) => format!("a[(k0 + u{j} % 4u) * p.m + min(r0 + u{j} / 4u, lr)]"),
        };
        let _ = writeln!(w, "        let sa{j} = {load};");
    }
    for u in 0..units {
        let name = match (vec_a, ta) {
            (true, false) => format!("av{u}"),
            (true, true) => format!("av{}_{}", u % 4, u / 4),
            (false, _) => format!("av{}_{}", u / 4, u % 4),
        };
        let _ = writeln!(w, "        let {name} = subgroupBroadcast(sa{}, {}u);", u / lanes, u % lanes);
    }
    match (vec_a, ta) {
        (true, false) => Box::new(|i, kk| format!("av{i}.{}", ["x", "y", "z", "w"][kk])),
        (true, true) => Box::new(|i, kk| format!("av{kk}_{}.{}", i / 4, ["x", "y", "z", "w"][i % 4])),
        (false, _) => Box::new(|i, kk| format!("av{i}_{kk}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let block = RegisterTile { rows: 32, cols: 8, threads: 16, threads_x: 8 };
        let t = SubgroupTile { lanes: 8, block };
        assert_eq!(t.name(), "s8r32x8w16x8");
        assert_eq!(SubgroupTile::parse(&t.name()), Some(t));
        assert_eq!(SubgroupTile::parse("s8r32x8w16x4"), None, "a subgroup wider than a row of threads");
        assert_eq!(SubgroupTile::parse("s6r32x8w16x8"), None, "lanes not a power of two");
        assert_eq!(SubgroupTile::parse("r32x8w16x8"), None);
        assert_eq!(SubgroupTile::parse("sr32x8w16x8"), None);
    }

    #[test]
    fn each_lane_loads_a_share_of_a() {
        let tile = SubgroupTile { lanes: 8, block: RegisterTile { rows: 16, cols: 8, threads: 8, threads_x: 8 } };
        let layout = MatmulLayout { vec_a: true, ..MatmulLayout::default() };
        let src = subgroup_matmul_source(tile, layout);
        // 16 rows over 8 lanes: two loads of A per slice of K, sixteen broadcasts.
        assert_eq!(src.matches("let sa").count(), 2, "{src}");
        assert_eq!(src.matches("subgroupBroadcast").count(), 16);
    }
}
