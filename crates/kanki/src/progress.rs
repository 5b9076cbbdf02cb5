//! Progress of long work on a terminal (nothing is drawn when stderr is not one).

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use kanki_store::ImportProgress;

pub struct ImportBar(ProgressBar);

pub fn import_bar(path: &Path, _size: Option<u64>) -> ImportBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("valid template"),
    );
    bar.set_message(format!("importing {}", path.display()));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    ImportBar(bar)
}

impl ImportBar {
    pub fn update(&self, p: &ImportProgress) {
        let per_sec = p.rows_read as f64 / self.0.elapsed().as_secs_f64().max(0.001);
        self.0.set_message(format!(
            "{} rows ({:.0}/s): {} added, {} updated, {} unchanged, {} skipped",
            p.rows_read, per_sec, p.added, p.updated, p.unchanged, p.skipped
        ));
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}
