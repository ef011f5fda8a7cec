//! A headless chromium driven over the DevTools protocol on `--remote-debugging-pipe` (fd 3
//! in, fd 4 out, one JSON message per NUL-terminated line): enough to open a page, evaluate
//! script in it and read the answers, with nothing but std.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running headless chromium.
pub struct Browser {
    child: Child,
    to_browser: ChildStdin,
    from_browser: BufReader<ChildStdout>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// A page (a target with its session).
pub struct Page {
    session: String,
}

impl Browser {
    /// Start chromium, or `None` when it is not installed.
    pub fn launch() -> Option<Browser> {
        if Command::new("chromium").arg("--version").output().is_err() {
            eprintln!("skipped: `chromium` is not installed (.ci/run installs it)");
            return None;
        }
        let profile = tempfile::tempdir().unwrap();
        // The shell puts the pipes where chromium expects them: our stdin at its fd 3, our
        // stdout at its fd 4 (no unsafe fd juggling between fork and exec here).
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec chromium \"$@\" 3<&0 4>&1 </dev/null >/dev/null 2>/dev/null")
            .arg("sh")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg("--remote-debugging-pipe")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let to_browser = child.stdin.take().unwrap();
        let from_browser = child.stdout.take().unwrap();
        Some(Browser {
            child,
            to_browser,
            from_browser: BufReader::new(from_browser),
            next_id: 1,
            _profile: profile,
        })
    }

    /// Send a command (to `session`, or to the browser) and return its result.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .expect("write to chromium");
        loop {
            let mut line = Vec::new();
            self.from_browser
                .read_until(0, &mut line)
                .expect("read from chromium");
            assert!(!line.is_empty(), "chromium closed the pipe");
            line.pop();
            let answer: Value = serde_json::from_slice(&line).unwrap();
            if answer["id"] == json!(id) {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Open `url` in a new page.
    pub fn open(&mut self, url: &str) -> Page {
        let target = self.call(None, "Target.createTarget", json!({ "url": url }));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        Page {
            session: attached["sessionId"].as_str().unwrap().to_string(),
        }
    }

    /// The value of `expression` evaluated in `page` (promises awaited).
    pub fn eval(&mut self, page: &Page, expression: &str) -> Value {
        let result = self.call(
            Some(&page.session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Evaluate `expression` until it is true; panics after a minute (a hang, not a timing).
    pub fn wait_for(&mut self, page: &Page, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.eval(page, expression) != json!(true) {
            assert!(Instant::now() < deadline, "never true: {expression}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
