use asgd_engine::*;
use asgd_engine::kernel::*;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct P { n: u32 }

#[test]
fn probe() {
    let t0 = std::time::Instant::now();
    let dev = Device::open(&DeviceOptions::default()).unwrap();
    println!("{:?} {:?} open {:?}", dev, dev.info(), t0.elapsed());
    let x = Tensor::from_f32(&dev, &[5], &[-1.0, 2.0, -3.0, 4.0, 0.5]).unwrap();
    let y = Tensor::empty(&dev, &[5], DType::F32);
    let k = Kernel::get(&dev, &asgd_shaders::ELEMENTWISE, "relu_forward", &[]);
    let d = Dispatch::new(&dev, k, &P { n: 5 }, &[&y, &x], grid_1d(5, 256));
    d.run(&dev);
    println!("{:?} {:?}", y.to_vec_f32().unwrap(), t0.elapsed());
    let d2 = dev.open_sibling().unwrap();
    println!("sibling {:?} {:?}", d2, t0.elapsed());
    for a in list_adapters(BackendChoice::Auto) { println!("{a:?}"); }
}
