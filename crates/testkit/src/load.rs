//! Steady HTTP load for tests: a request rate spread over worker threads, half on keep-alive
//! connections and half on a new connection per request, plus slow requests; every failure is counted
//! with why. Zero failed requests is what galleon promises while it takes instances out of service.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub sent: u64,
    pub failed: u64,
    pub why: BTreeMap<String, u64>,
    /// Bodies of successful answers, counted (to see which versions answered).
    pub bodies: BTreeMap<String, u64>,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sent={} failed={} {:?}", self.sent, self.failed, self.why)
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    stats: Arc<Mutex<Stats>>,
}

/// One HTTP/1.1 connection that can be reused.
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(authority: &str) -> std::io::Result<Conn> {
        let s = TcpStream::connect(authority)?;
        s.set_read_timeout(Some(Duration::from_secs(15)))?;
        s.set_nodelay(true)?;
        Ok(Conn { reader: BufReader::new(s) })
    }

    fn get(&mut self, authority: &str, path: &str, keep: bool) -> Result<(u16, String), String> {
        let conn = if keep { "keep-alive" } else { "close" };
        write!(self.reader.get_mut(), "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: {conn}\r\n\r\n")
            .map_err(|e| format!("write: {}", e.kind()))?;
        let mut status = String::new();
        self.reader.read_line(&mut status).map_err(|e| format!("read: {}", e.kind()))?;
        if status.is_empty() {
            return Err("closed before an answer".into());
        }
        let code: u16 = status.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("no status line")?;
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).map_err(|e| format!("read headers: {}", e.kind()))?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body).map_err(|e| format!("read body: {}", e.kind()))?;
        Ok((code, String::from_utf8_lossy(&body).into_owned()))
    }
}

impl Load {
    /// About `rps` requests a second to `http://authority/path`, and (when given) a slow request to
    /// `slow_path` every 2.5 s on two more workers.
    pub fn start(authority: &str, path: &str, rps: f64, slow_path: Option<&str>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(Stats::default()));
        let workers_n = ((rps / 20.0).ceil() as usize).max(2);
        let period = Duration::from_secs_f64(workers_n as f64 / rps);
        let mut workers = vec![];
        let mut spawn = |path: String, period: Duration, keep: bool| {
            let (stop, stats, authority) = (stop.clone(), stats.clone(), authority.to_string());
            workers.push(std::thread::spawn(move || {
                let mut conn: Option<Conn> = None;
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    next += period;
                    let result = match conn.take() {
                        Some(c) => Ok(c),
                        None => Conn::open(&authority).map_err(|e| format!("connect: {}", e.kind())),
                    }
                    .and_then(|mut c| c.get(&authority, &path, keep).map(|r| (r, c)));
                    let mut st = stats.lock().unwrap_or_else(|p| p.into_inner());
                    st.sent += 1;
                    match result {
                        Ok(((200, body), c)) => {
                            *st.bodies.entry(body.trim().chars().take(80).collect()).or_default() += 1;
                            if keep {
                                conn = Some(c);
                            }
                        }
                        Ok(((code, _), _)) => {
                            st.failed += 1;
                            *st.why.entry(format!("status {code}")).or_default() += 1;
                        }
                        Err(why) => {
                            st.failed += 1;
                            *st.why.entry(why).or_default() += 1;
                        }
                    }
                    drop(st);
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
            }));
        };
        for i in 0..workers_n {
            spawn(path.to_string(), period, i % 2 == 0);
        }
        if let Some(slow) = slow_path {
            for _ in 0..2 {
                spawn(slow.to_string(), Duration::from_millis(2500), false);
            }
        }
        Load { stop, workers, stats }
    }

    /// What was seen so far.
    pub fn stats(&self) -> Stats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops the workers (each finishes its request in flight) and returns the counts.
    pub fn stop(self) -> Stats {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            let _ = w.join();
        }
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
