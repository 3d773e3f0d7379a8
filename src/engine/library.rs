//! Where libonnxruntime.so is looked for, in order: the `engine.onnxruntime_lib` setting (a
//! file, or a folder holding one), `$ORT_DYLIB_PATH`, an onnxruntime-gpu installed by pip,
//! beside the binary, the package's `/usr/lib/visiond`, the checkout's `vendor/onnxruntime`
//! (tools/setup puts it there), then the system's library path.

use std::path::{Path, PathBuf};

pub fn candidates(setting: &str) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if !setting.is_empty() {
        let path = PathBuf::from(setting);
        paths.push(if path.is_dir() {
            library_in(&path).unwrap_or(path)
        } else {
            path
        });
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        paths.push(PathBuf::from(path));
    }
    paths.extend(pip_gpu_libraries(&python_lib_dirs()));
    if let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned))
    {
        paths.push(bin.join("libonnxruntime.so"));
        paths.push(bin.join("../lib/visiond/libonnxruntime.so"));
    }
    paths.push(PathBuf::from("/usr/lib/visiond/libonnxruntime.so"));
    paths.push(PathBuf::from("vendor/onnxruntime/libonnxruntime.so"));
    paths.push(PathBuf::from("libonnxruntime.so"));
    paths
}

/// `libonnxruntime.so` or the wheel's `libonnxruntime.so.<version>` in `dir`.
fn library_in(dir: &Path) -> Option<PathBuf> {
    entries_named(dir, "libonnxruntime.so").into_iter().next()
}

/// The entries of `dir` whose names start with `prefix`, sorted; none if it cannot be read.
fn entries_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    found.sort();
    found
}

/// The `lib/python3.*` folders of the system, /usr/local, the user and a virtual environment.
fn python_lib_dirs() -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from("/usr/lib"), PathBuf::from("/usr/local/lib")];
    if let Some(home) = std::env::var_os("HOME") {
        roots.push(Path::new(&home).join(".local/lib"));
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        roots.push(Path::new(&venv).join("lib"));
    }
    roots
        .iter()
        .flat_map(|root| entries_named(root, "python3"))
        .collect()
}

/// onnxruntime-gpu wheels under those folders: `onnxruntime/capi/` with a GPU provider
/// library beside the runtime (the CPU-only wheel is left to the packaged library).
fn pip_gpu_libraries(python_dirs: &[PathBuf]) -> Vec<PathBuf> {
    python_dirs
        .iter()
        .flat_map(|dir| ["site-packages", "dist-packages"].map(|d| dir.join(d)))
        .map(|packages| packages.join("onnxruntime/capi"))
        .filter(|capi| {
            ["cuda", "tensorrt"].iter().any(|ep| {
                capi.join(format!("libonnxruntime_providers_{ep}.so"))
                    .exists()
            })
        })
        .filter_map(|capi| library_in(&capi))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wheel's layout: the versioned runtime with its provider libraries beside it.
    fn wheel(root: &Path, python: &str, providers: &[&str]) -> PathBuf {
        let capi = root.join(python).join("site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        std::fs::write(capi.join("libonnxruntime.so.1.31.1"), b"").unwrap();
        for provider in providers {
            std::fs::write(
                capi.join(format!("libonnxruntime_providers_{provider}.so")),
                b"",
            )
            .unwrap();
        }
        capi
    }

    #[test]
    fn a_pip_onnxruntime_gpu_is_found_and_the_cpu_wheel_is_not() {
        let root = tempfile::tempdir().unwrap();
        let gpu = wheel(root.path(), "python3.12", &["shared", "cuda"]);
        wheel(root.path(), "python3.11", &["shared"]);
        let dirs = [
            root.path().join("python3.11"),
            root.path().join("python3.12"),
        ];
        assert_eq!(
            pip_gpu_libraries(&dirs),
            vec![gpu.join("libonnxruntime.so.1.31.1")]
        );
    }

    #[test]
    fn the_setting_may_name_the_folder_that_holds_the_library() {
        let root = tempfile::tempdir().unwrap();
        let capi = wheel(root.path(), "python3.12", &["tensorrt"]);
        let first = candidates(capi.to_str().unwrap()).remove(0);
        assert_eq!(first, capi.join("libonnxruntime.so.1.31.1"));
    }
}
