//! Test support: a scratch project, the lakescore binary, and a plain delta-rs writer that
//! stands for "any other Delta writer" (Spark, delta-rs Python) putting tables in place.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::protocol::SaveMode;
use tempfile::TempDir;

/// A project created with `lakescore init` in a temporary folder.
pub struct Workspace {
    dir: TempDir,
}

/// What one run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts success and returns standard output.
    pub fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self.stdout
    }

    /// Asserts failure with `code` and returns standard error.
    pub fn fails_with(self, code: i32) -> String {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self.stderr
    }
}

impl Workspace {
    /// A fresh project made by `lakescore init`.
    pub fn init() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let workspace = Self { dir };
        workspace.run(&["init", "."]).ok();
        workspace
    }

    /// A copy of this project and its lakehouse in a new folder.
    pub fn duplicate(&self) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(self.path(), dir.path());
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn lakehouse(&self) -> PathBuf {
        self.path().join("lakehouse")
    }

    /// Runs the binary in the project folder.
    pub fn run(&self, args: &[&str]) -> Run {
        lakescore(self.path(), args)
    }

    /// Copies `tests/data/<name>` into the project folder.
    pub fn copy_fixtures(&self, name: &str) {
        let from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name);
        copy_dir(&from, &self.path().join(name));
    }

    /// Appends TOML to the project file.
    pub fn append_to_project(&self, toml: &str) {
        let file = self.path().join("lakescore.toml");
        let mut text = std::fs::read_to_string(&file).expect("project file");
        text.push_str(toml);
        std::fs::write(file, text).expect("write project file");
    }

    /// The newest table description and column comments in the Delta log of table folder
    /// `table` (as `schema/name`), read from the log as any Delta reader reads them.
    pub fn delta_descriptions(&self, table: &str) -> (String, Vec<(String, String)>) {
        let log = self.path().join("lakehouse").join(table).join("_delta_log");
        let mut commits: Vec<_> = std::fs::read_dir(&log)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        commits.sort();
        let metadata = commits
            .iter()
            .flat_map(|commit| {
                let text = std::fs::read_to_string(commit).unwrap();
                text.lines()
                    .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
                    .filter_map(|action| action.get("metaData").cloned())
                    .collect::<Vec<_>>()
            })
            .last()
            .unwrap();
        let schema: serde_json::Value =
            serde_json::from_str(metadata["schemaString"].as_str().unwrap()).unwrap();
        let comments = schema["fields"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|field| {
                let comment = field["metadata"]["comment"].as_str()?;
                Some((field["name"].as_str()?.to_string(), comment.to_string()))
            })
            .collect();
        let description = metadata["description"].as_str().unwrap_or_default();
        (description.to_string(), comments)
    }

    /// Writes a file under the project folder, creating folders.
    pub fn write_file(&self, relative: &str, contents: &str) {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folders");
        std::fs::write(path, contents).expect("write file");
    }

    /// Runs the binary on a blocking thread, so the test's own async servers (webhook
    /// listeners) keep running meanwhile.
    pub async fn run_async(&self, args: &[&str]) -> Run {
        let dir = self.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            lakescore(&dir, &args)
        })
        .await
        .expect("the binary's thread")
    }

    /// Runs a query and returns its CSV output.
    pub fn csv(&self, sql: &str) -> String {
        self.run(&["sql", sql, "--format", "csv"]).ok()
    }

    /// Writes `(id, name)` rows into table `schema.name` with delta-rs, as another writer
    /// would; returns the new version.
    pub async fn write_rows(&self, table: &str, rows: &[(i64, &str)], mode: SaveMode) -> u64 {
        let (schema, name) = table.split_once('.').expect("schema.name");
        let path = self.lakehouse().join(schema).join(name);
        write_people(&path, rows, mode).await
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("fixture folder") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy fixture");
        }
    }
}

/// Files (not folders) anywhere under `dir`.
pub fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.expect("entry").path())
        .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
        .sum()
}

/// Sends SIGTERM to a child process.
pub fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Starts the lakescore binary in the workspace, its output piped.
pub fn spawn_lakescore(workspace: &Workspace, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lakescore"))
        .args(args)
        .current_dir(workspace.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lakescore")
}

/// A lakescore process stopped at a fault-injection point (see `engine/src/fault.rs`).
pub struct Paused {
    pub child: Child,
    /// The rest of its standard error.
    pub stderr: std::io::BufReader<std::process::ChildStderr>,
}

impl Paused {
    /// Kills the process where it waits.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// Lets it go on (it was started with a resume file) and returns how it ended and
    /// the rest of its standard error.
    pub fn resume(mut self, resume: &Path) -> (Option<i32>, String) {
        use std::io::Read;
        std::fs::write(resume, "").expect("resume file");
        let status = self.child.wait().expect("wait");
        let mut rest = Vec::new();
        self.stderr.read_to_end(&mut rest).expect("stderr");
        (status.code(), String::from_utf8_lossy(&rest).into_owned())
    }
}

/// Starts lakescore in `dir` with `env`, pausing at fault point `point` (until `resume`
/// exists, when given), and returns once it is there.
pub fn spawn_paused(
    dir: &Path,
    args: &[&str],
    point: &str,
    resume: Option<&Path>,
    env: &[(&str, &str)],
) -> Paused {
    use std::io::BufRead;
    let mut command = Command::new(env!("CARGO_BIN_EXE_lakescore"));
    command
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .env("LAKESCORE_FAULT_PAUSE", point)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(resume) = resume {
        command.env("LAKESCORE_FAULT_RESUME", resume);
    }
    let mut child = command.spawn().expect("start lakescore");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let wanted = format!("paused at {point}");
    while !line.contains(&wanted) {
        line.clear();
        let read = stderr.read_line(&mut line).expect("read stderr");
        assert!(read > 0, "lakescore {args:?} ended before {point}");
    }
    Paused { child, stderr }
}

/// Runs the lakescore binary in `dir` with `input` on its standard input.
pub fn lakescore_with_input(dir: &Path, args: &[&str], input: &[u8]) -> Run {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lakescore"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lakescore");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("run lakescore").into()
}

/// Runs the lakescore binary in `dir` with no cloud credentials leaking in.
pub fn lakescore(dir: &Path, args: &[&str]) -> Run {
    lakescore_with_env(dir, args, &[])
}

/// Runs the lakescore binary in `dir` with extra environment variables.
pub fn lakescore_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lakescore"));
    command
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied());
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || key.starts_with("AZURE_") || key.starts_with("GOOGLE_") {
            command.env_remove(key);
        }
    }
    command.output().expect("run lakescore").into()
}

/// Writes `(id, name)` rows to the Delta table at `path` and returns the new version.
pub async fn write_people(path: &Path, rows: &[(i64, &str)], mode: SaveMode) -> u64 {
    std::fs::create_dir_all(path).expect("table folder");
    let url = url::Url::from_directory_path(path.canonicalize().expect("canonical")).expect("url");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .expect("batch");
    let table = DeltaTable::try_from_url(url).await.expect("open");
    let table = table
        .write(vec![batch])
        .with_save_mode(mode)
        .await
        .expect("write");
    table.version().expect("version")
}
