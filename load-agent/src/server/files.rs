//! A run's files: listing and downloads that cannot leave the run's folder.
//!
//! Run ids and file names are checked as plain names before they touch the file system (no separators, no parent
//! references, no absolute paths, no NUL, no hidden files); the resolved path is then canonicalized and must still
//! sit directly in the run's folder, so a symbolic link cannot lead out either. Anything else is a 404.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use super::errors::AgentError;
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

/// The canonical path of file `name` in `dir`, when it is a safe name of a regular file directly in `dir`.
pub fn resolve_in(dir: &Path, name: &str) -> Option<PathBuf> {
    if !safe_file_name(name) {
        return None;
    }
    let root = dir.canonicalize().ok()?;
    let resolved = root.join(name).canonicalize().ok()?;
    (resolved.parent() == Some(root.as_path()) && resolved.is_file()).then_some(resolved)
}

/// The downloadable files of a run folder, by name (temporary files of atomic writes left out).
pub fn list(dir: &Path) -> std::io::Result<Vec<FileEntry>> {
    let mut files: Vec<FileEntry> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            if name.ends_with(".tmp") {
                return None;
            }
            let path = resolve_in(dir, &name)?;
            let bytes = std::fs::metadata(path).ok()?.len();
            Some(FileEntry { name, bytes })
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
    let resolved = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || resolve_in(&dir, &name))
            .await
            .map_err(|e| AgentError::Internal(e.to_string()))?
    };
    let bytes = tokio::fs::read(resolved.ok_or_else(not_found)?).await.map_err(|_| not_found())?;
    Ok(([(header::CONTENT_TYPE, content_type(&name))], bytes))
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
        std::fs::create_dir(run.path().join("folder")).unwrap();
        assert!(resolve_in(run.path(), "status.json").is_some());
        for name in ["link.json", "sub", "folder", "missing.csv"] {
            assert_eq!(resolve_in(run.path(), name), None, "{name}");
        }
        let names: Vec<String> = list(run.path()).unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["status.json"]);
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
