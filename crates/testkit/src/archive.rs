//! Hand-written tar archives for tests, including hostile ones (`../evil`, links out of the root) that
//! well-behaved tar writers refuse to produce.

use std::io::Write;
use std::path::Path;

pub enum Entry<'a> {
    File { path: &'a str, data: &'a [u8], mode: u32 },
    Dir { path: &'a str },
    Symlink { path: &'a str, target: &'a str },
}

fn octal(field: &mut [u8], value: u64) {
    let s = format!("{:0width$o}\0", value, width = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

fn header(path: &str, size: u64, mode: u32, kind: u8, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    assert!(path.len() <= 100 && link.len() <= 100, "test archive names must be short");
    h[..path.len()].copy_from_slice(path.as_bytes());
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// Writes an uncompressed tar with exactly these entries.
pub fn write_tar(dest: &Path, entries: &[Entry<'_>]) {
    let mut out = std::fs::File::create(dest).expect("create the archive");
    for e in entries {
        match e {
            Entry::File { path, data, mode } => {
                out.write_all(&header(path, data.len() as u64, *mode, b'0', "")).expect("write");
                out.write_all(data).expect("write");
                let pad = (512 - data.len() % 512) % 512;
                out.write_all(&vec![0u8; pad]).expect("write");
            }
            Entry::Dir { path } => out.write_all(&header(path, 0, 0o755, b'5', "")).expect("write"),
            Entry::Symlink { path, target } => out.write_all(&header(path, 0, 0o777, b'2', target)).expect("write"),
        }
    }
    out.write_all(&[0u8; 1024]).expect("write the end of the archive");
}
