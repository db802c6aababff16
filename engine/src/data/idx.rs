//! The idx format of MNIST and Fashion-MNIST: a big-endian header (magic, then one `u32` per
//! dimension) followed by the raw `u8` values, usually gzipped.
//!
//! Parsing is check-then-parse on bytes (`parse_idx_images`, `parse_idx_labels`) so tests can feed
//! crafted files; reading and finding files on disk is kept apart from it.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};

/// Magic number of an idx file of unsigned bytes with one dimension (a label file).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Magic number of an idx file of unsigned bytes with three dimensions (an image file).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;

/// The four idx files of an MNIST-style dataset, without the `.gz` suffix.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// Training labels file name (without `.gz`).
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// Test images file name (without `.gz`).
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// Test labels file name (without `.gz`).
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
/// All four, in the order train images, train labels, test images, test labels.
pub const IDX_FILES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The images of one idx3 file: `pixels` is `[count, rows, cols]` row-major, values 0..=255.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Image height in pixels.
    pub rows: usize,
    /// Image width in pixels.
    pub cols: usize,
    /// `[count, rows, cols]` raw pixel values.
    pub pixels: Vec<u8>,
}

fn data_err(path: &Path, problem: impl std::fmt::Display) -> EngineError {
    EngineError::Data(format!("{}: {problem}", path.display()))
}

/// True when `bytes` starts with the gzip magic `1f 8b` (the name of a file is not trusted).
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Returns `bytes` decompressed if they are a gzip stream, unchanged otherwise.
/// `path` only names the file in error messages.
pub fn gunzip_if_gzip(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if !is_gzip(&bytes) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    flate2::read::MultiGzDecoder::new(bytes.as_slice()).read_to_end(&mut out).map_err(|e| {
        data_err(path, format!("the gzip stream is corrupt or cut short ({e}); delete the file and download it again"))
    })?;
    Ok(out)
}

/// Reads a file and decompresses it when it is gzipped.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
    gunzip_if_gzip(bytes, path)
}

/// Finds `dir/<stem>.gz` or `dir/<stem>` (in that order); `None` when neither is a file.
pub fn find_idx_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()].into_iter().map(|name| dir.join(name)).find(|p| p.is_file())
}

/// The most bytes of data one idx file may declare: 1 GiB (MNIST's training images are 47 MB,
/// EMNIST's largest split 547 MB). A header declaring more is refused before anything is read.
pub const MAX_IDX_BYTES: usize = 1 << 30;

/// Checks the magic and the dimension count of the header at the start of `bytes`, and
/// returns the dimensions, the header's length and the bytes of data it declares.
/// `ndims` is 1 for labels and 3 for images.
fn check_header(bytes: &[u8], path: &Path, magic: u32, ndims: usize) -> Result<(Vec<usize>, usize, usize)> {
    let header_len = 4 + 4 * ndims;
    let what = if ndims == 1 { "label" } else { "image" };
    if bytes.len() < 4 {
        return Err(data_err(
            path,
            format!(
                "the file is {} bytes long, too short for an idx header; it is truncated, download it again",
                bytes.len()
            ),
        ));
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        return Err(data_err(
            path,
            format!(
                "the magic number is {found:#010x}, not {magic:#010x} of an idx {what} file; \
                 the file is not an idx {what} file (check that images and labels are not swapped)"
            ),
        ));
    }
    if bytes.len() < header_len {
        return Err(data_err(
            path,
            format!(
                "the header needs {header_len} bytes but the file has {}; it is truncated, download it again",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> =
        bytes[4..header_len].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    match dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) {
        Some(n) if n <= MAX_IDX_BYTES => Ok((dims, header_len, n)),
        Some(n) => Err(data_err(
            path,
            format!(
                "the header declares {dims:?} ({n} bytes of data), more than the {MAX_IDX_BYTES} bytes \
                 asgd reads from one idx file; the file is corrupt or not an MNIST-style set"
            ),
        )),
        None => Err(data_err(path, format!("the header declares impossible dimensions {dims:?}; the file is corrupt"))),
    }
}

/// Checks that the data after the header is exactly the `n` bytes `dims` declare; `body`
/// is its length, or `None` when more than `n` bytes follow (a stream read no further).
fn check_body(path: &Path, dims: &[usize], n: usize, body: Option<usize>) -> Result<()> {
    match body {
        Some(len) if len < n => Err(data_err(
            path,
            format!(
                "the header declares {dims:?} ({n} bytes of data) but only {len} bytes follow; \
                 the file is truncated, download it again"
            ),
        )),
        Some(len) if len > n => Err(data_err(
            path,
            format!(
                "the header declares {dims:?} ({n} bytes of data) but {len} bytes follow; \
                 the file is not a well-formed idx file, download it again"
            ),
        )),
        Some(_) => Ok(()),
        None => Err(data_err(
            path,
            format!(
                "the header declares {dims:?} ({n} bytes of data) but more follow (the rest was not read); \
                 the file is not a well-formed idx file, download it again"
            ),
        )),
    }
}

/// Checks the magic and the dimension count and returns the dimensions and the body.
fn parse_header<'a>(bytes: &'a [u8], path: &Path, magic: u32, ndims: usize) -> Result<(Vec<usize>, &'a [u8])> {
    let (dims, header_len, n) = check_header(bytes, path, magic, ndims)?;
    let body = &bytes[header_len..];
    check_body(path, &dims, n, Some(body.len()))?;
    Ok((dims, body))
}

/// Reads an idx file from disk, gzipped or not, decompressing no more than its header
/// declares: the header is read and checked first, then at most one byte past the data it
/// declares, so a small file that inflates to gigabytes is refused after reading what the
/// header promised. Returns the dimensions and the data.
fn read_idx(path: &Path, magic: u32, ndims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let mut file = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?);
    let gz = std::io::BufRead::fill_buf(&mut file).map_err(|e| EngineError::io(path, e))?.starts_with(&GZIP_MAGIC);
    let mut reader: Box<dyn Read> = if gz { Box::new(flate2::read::MultiGzDecoder::new(file)) } else { Box::new(file) };
    let stream_err = |e: std::io::Error| {
        if gz {
            data_err(
                path,
                format!("the gzip stream is corrupt or cut short ({e}); delete the file and download it again"),
            )
        } else {
            EngineError::io(path, e)
        }
    };
    let header_len = 4 + 4 * ndims;
    let mut header = Vec::with_capacity(header_len);
    (&mut reader).take(header_len as u64).read_to_end(&mut header).map_err(stream_err)?;
    let (dims, _, n) = check_header(&header, path, magic, ndims)?;
    let mut body = Vec::with_capacity(n);
    reader.take(n as u64 + 1).read_to_end(&mut body).map_err(stream_err)?;
    check_body(path, &dims, n, (body.len() <= n).then_some(body.len()))?;
    Ok((dims, body))
}

/// Reads an idx3 image file (gzipped or not) without decompressing more than it declares
/// (see `read_idx`'s bound).
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    let (dims, pixels) = read_idx(path, IMAGES_MAGIC, 3)?;
    Ok(IdxImages { count: dims[0], rows: dims[1], cols: dims[2], pixels })
}

/// Reads an idx1 label file (gzipped or not) without decompressing more than it declares.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    Ok(read_idx(path, LABELS_MAGIC, 1)?.1)
}

/// Parses an (uncompressed) idx3 image file: magic `0x00000803`, then count, rows, cols.
/// `path` only names the file in error messages.
pub fn parse_idx_images(bytes: &[u8], path: &Path) -> Result<IdxImages> {
    let (dims, body) = parse_header(bytes, path, IMAGES_MAGIC, 3)?;
    Ok(IdxImages { count: dims[0], rows: dims[1], cols: dims[2], pixels: body.to_vec() })
}

/// Parses an (uncompressed) idx1 label file: magic `0x00000801`, then count. Returns the labels.
/// `path` only names the file in error messages.
pub fn parse_idx_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let (_, body) = parse_header(bytes, path, LABELS_MAGIC, 1)?;
    Ok(body.to_vec())
}

/// Checks that an image file and a label file belong together: the same count, images of
/// `rows x cols`, and every label below `classes`.
pub fn check_pair(
    images: &IdxImages,
    images_path: &Path,
    labels: &[u8],
    labels_path: &Path,
    rows: usize,
    cols: usize,
    classes: usize,
) -> Result<()> {
    if (images.rows, images.cols) != (rows, cols) {
        return Err(data_err(
            images_path,
            format!(
                "the images are {}x{} but this dataset has {rows}x{cols} images; \
                 the file belongs to another dataset",
                images.rows, images.cols
            ),
        ));
    }
    if images.count != labels.len() {
        return Err(data_err(
            images_path,
            format!(
                "the file holds {} images but {} holds {} labels; the two files must come from \
                 the same split, download both again",
                images.count,
                labels_path.display(),
                labels.len()
            ),
        ));
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| usize::from(l) >= classes) {
        return Err(data_err(
            labels_path,
            format!(
                "label {l} at index {i} is outside 0..={}; the file is corrupt, download it again",
                classes.saturating_sub(1)
            ),
        ));
    }
    Ok(())
}
