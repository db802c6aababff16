//! The WGSL kernels of asgd, one file per op family. Each is exposed as a [`Shader`] and
//! validated by naga in this crate's tests, so a broken shader fails with its file and line.

/// A WGSL source file.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    /// File name, used in labels and error messages.
    pub name: &'static str,
    /// The WGSL text.
    pub source: &'static str,
}

macro_rules! shaders {
    ($($(#[$doc:meta])* $id:ident => $file:literal),* $(,)?) => {
        $( $(#[$doc])* pub const $id: Shader = Shader { name: $file, source: include_str!($file) }; )*
        /// Every shader, for validation.
        pub const ALL: &[Shader] = &[$($id),*];
    };
}

shaders! {
    /// Element-wise ops: ReLU forward and backward, fill, axpy.
    ELEMENTWISE => "elementwise.wgsl",
}
