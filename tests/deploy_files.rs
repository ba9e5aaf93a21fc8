//! Being written: deploy_files.
