//! `visiond bench --reload`: how long a saved config file takes to be live, from the save to
//! the new settings snapshot, for in-place saves and saves by rename. Runs the real store and
//! watcher on a copy of the shipped config in a temp folder. Prints, never asserts.

use crate::settings::{watch, Store};
use std::path::Path;
use std::time::{Duration, Instant};

const SAVES: usize = 40;
const SHIPPED: &str = include_str!("../../etc/visiond/visiond.toml");

pub fn run() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("visiond-bench-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("visiond.toml");
    std::fs::write(&path, SHIPPED)?;
    let result = measure(&path);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(path: &Path) -> anyhow::Result<()> {
    let store = Store::open(path, &[]).map_err(|e| anyhow::anyhow!(e.join("\n")))?;
    let _watcher = watch::spawn(store.clone())?;
    println!("save style | saves | median ms | p90 ms | max ms");
    println!("---|---:|---:|---:|---:");
    for by_rename in [false, true] {
        let mut times = Vec::with_capacity(SAVES);
        for i in 0..SAVES {
            let fps = 10 + (i % 50) as u32;
            let text = SHIPPED.replace("fps = 30 ", &format!("fps = {fps} "));
            let start = Instant::now();
            if by_rename {
                let temp = path.with_extension("toml.new");
                std::fs::write(&temp, &text)?;
                std::fs::rename(&temp, path)?;
            } else {
                std::fs::write(path, &text)?;
            }
            while store.settings().input.fps != fps {
                anyhow::ensure!(
                    start.elapsed() < Duration::from_secs(10),
                    "a save was not live after 10 s"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        let style = if by_rename { "rename" } else { "in place" };
        println!(
            "{style} | {SAVES} | {:.0} | {:.0} | {:.0}",
            at(0.5),
            at(0.9),
            at(1.0)
        );
    }
    Ok(())
}
