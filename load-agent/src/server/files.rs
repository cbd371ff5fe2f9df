//! A run's files: listing and downloads that cannot leave the run's folder.
//!
//! Run ids and file names are checked as plain names before they touch the file system (no separators, no parent
//! references, no absolute paths, no NUL, no hidden files); the file is then opened without following a symbolic
//! link (neither the run's folder nor the file may be one) and must be a regular file. Anything else is a 404.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use super::errors::AgentError;
use super::store;
use crate::protocol::{FileEntry, FileList};

/// Run ids are 16 lowercase hex digits; anything else is refused before it reaches the file system.
pub fn valid_run_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A new random run id.
pub fn new_run_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A plain file name that stays inside its folder: letters, digits, `_`, `-` and `.`, not starting with `.` (so
/// neither `..` nor hidden files), no `..` anywhere, at most 128 bytes. Separators (`/`, `\`), NUL, drive letters
/// and absolute paths all fail the character check.
pub fn safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && !name.contains("..")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// File `name` of the run folder `dir`, opened, when it is a safe name of a regular file directly in `dir`: no
/// link is followed, neither `dir` nor the file.
pub fn open_in(dir: &Path, name: &str) -> Option<File> {
    if !safe_file_name(name) || !store::is_real_dir(dir) {
        return None;
    }
    store::open_regular(&dir.join(name)).ok()
}

/// The whole content of file `name` of the run folder `dir` (see [`open_in`]).
pub fn read_in(dir: &Path, name: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    open_in(dir, name)?.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// The downloadable files of a run folder, by name: regular files only (no links), temporary files of atomic
/// writes left out.
pub fn list(dir: &Path) -> std::io::Result<Vec<FileEntry>> {
    if !store::is_real_dir(dir) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the run's folder is not a real folder"));
    }
    let mut files: Vec<FileEntry> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            if name.ends_with(store::TEMPORARY_SUFFIX) || !safe_file_name(&name) {
                return None;
            }
            // symlink_metadata: a link is its own kind, never its target's.
            let meta = entry.path().symlink_metadata().ok()?;
            meta.is_file().then_some(FileEntry { name, bytes: meta.len() })
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("csv") => "text/csv; charset=utf-8",
        Some("json") => "application/json",
        Some("jsonl") => "application/jsonl",
        _ => "application/octet-stream",
    }
}

/// GET /v1/runs/{id}/files
pub async fn files(
    State(state): State<AppState>,
    path: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<FileList>, AgentError> {
    let UrlPath(id) = path?;
    let dir = state.registry.dir_of(&id)?;
    let files = tokio::task::spawn_blocking(move || list(&dir))
        .await
        .map_err(|e| AgentError::Internal(e.to_string()))?
        .map_err(|e| AgentError::Internal(format!("listing run {id}'s files: {e}")))?;
    Ok(Json(FileList { files }))
}

/// GET /v1/runs/{id}/files/{name}
pub async fn download(
    State(state): State<AppState>,
    path: Result<UrlPath<(String, String)>, PathRejection>,
) -> Result<impl IntoResponse, AgentError> {
    let UrlPath((id, name)) = path?;
    let dir = state.registry.dir_of(&id)?;
    let not_found = || AgentError::NotFound(format!("run {id} has no file {name:?}"));
    let bytes = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || read_in(&dir, &name))
            .await
            .map_err(|e| AgentError::Internal(e.to_string()))?
    };
    Ok(([(header::CONTENT_TYPE, content_type(&name))], bytes.ok_or_else(not_found)?))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::server::tests::{start_body, test_config};

    /// Names that try to leave the run folder, one way or another.
    const ESCAPES: [&str; 16] = [
        "",
        "..",
        ".",
        "../status.json",
        "../../etc/passwd",
        "/etc/passwd",
        "a/b",
        "..\\x",
        "..\\..\\windows\\win.ini",
        "C:\\Windows\\win.ini",
        ".hidden",
        "x\0y",
        "status.json\0",
        "a..b",
        "%2e%2e",
        "~root",
    ];

    #[test]
    fn file_names_cannot_leave_the_run_folder() {
        for bad in ESCAPES {
            assert!(!safe_file_name(bad), "{bad:?}");
        }
        assert!(!safe_file_name(&"a".repeat(129)));
        for good in ["locust_stats.csv", "status.json", "windows.jsonl", "request.json"] {
            assert!(safe_file_name(good), "{good}");
        }
    }

    #[test]
    fn run_ids_are_checked() {
        assert!(valid_run_id("0123456789abcdef"));
        assert!(valid_run_id(&new_run_id()));
        for bad in
            ["0123456789ABCDEF", "0123456789abcde", "../../etc/passwd", "0123456789abcdeg", "", "..%2f..%2f..%2f.."]
        {
            assert!(!valid_run_id(bad), "{bad}");
        }
    }

    #[test]
    fn links_out_of_the_folder_are_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        let run = tempfile::tempdir().unwrap();
        std::fs::write(run.path().join("status.json"), "{}").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), run.path().join("link.json")).unwrap();
        std::os::unix::fs::symlink(outside.path(), run.path().join("sub")).unwrap();
        // A link to a file of the same folder is not followed either.
        std::os::unix::fs::symlink(run.path().join("status.json"), run.path().join("alias.json")).unwrap();
        std::fs::create_dir(run.path().join("folder")).unwrap();
        assert_eq!(read_in(run.path(), "status.json").as_deref(), Some(&b"{}"[..]));
        for name in ["link.json", "sub", "alias.json", "folder", "missing.csv"] {
            assert!(read_in(run.path(), name).is_none(), "{name}");
        }
        let names: Vec<String> = list(run.path()).unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["status.json"]);
        // Nor is a run folder that is a link.
        let linked = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(run.path(), linked.path().join("run")).unwrap();
        assert!(read_in(&linked.path().join("run"), "status.json").is_none());
        assert!(list(&linked.path().join("run")).is_err());
    }

    async fn get(app: &axum::Router, path: &str) -> (StatusCode, Vec<u8>) {
        let response = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        (status, axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec())
    }

    #[tokio::test]
    async fn downloads_through_the_router_stay_in_the_run_folder() {
        let dir = tempfile::tempdir().unwrap();
        // A file next to the runs, which a traversal would reach.
        std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();
        let app = crate::server::router(test_config(dir.path())).unwrap();
        let response = app
            .clone()
            .oneshot(
                Request::post("/v1/runs")
                    .header("content-type", "application/json")
                    .body(Body::from(start_body("http://127.0.0.1:9", 0.2).to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let id = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["run_id"].as_str().unwrap().to_string();

        let (status, body) = get(&app, &format!("/v1/runs/{id}/files/request.json")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&body).contains("127.0.0.1:9"));
        let attempts = [
            "..%2F..%2Fsecret.txt",
            "..%2f..%2f..%2fetc%2fpasswd",
            "%2e%2e%2f%2e%2e%2fsecret.txt",
            "%2Fetc%2Fpasswd",
            "..%5C..%5Csecret.txt",
            "..",
            ".",
            "status.json%00",
            ".hidden",
            "nothing.csv",
            "%2e%2e",
        ];
        for attempt in attempts {
            let (status, body) = get(&app, &format!("/v1/runs/{id}/files/{attempt}")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{attempt}");
            assert!(!String::from_utf8_lossy(&body).contains("secret\""), "{attempt}");
            let error: crate::protocol::ApiError = serde_json::from_slice(&body).unwrap();
            assert!(!error.error.is_empty());
        }
        // Traversal through the run id, and unknown ids, are 404 too.
        for path in [
            "/v1/runs/..%2F..%2Fsecret.txt/files",
            "/v1/runs/..%2F/files/secret.txt",
            "/v1/runs/0123456789abcdef/files",
            "/v1/runs/0123456789abcdef/files/status.json",
        ] {
            assert_eq!(get(&app, path).await.0, StatusCode::NOT_FOUND, "{path}");
        }
    }
}
