//! A fault-injecting TCP proxy in front of a real server (the test registry): while healthy
//! it relays bytes both ways untouched; switched to a failing status it cuts every open
//! connection (mid-blob, as a crashing registry behind a load balancer would) and answers
//! each new request with that status, counting them, until it is healthy again.

use std::{
    io::{BufRead, BufReader, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering},
    },
    thread,
};

pub struct FaultProxy {
    /// `127.0.0.1:PORT`, to use in place of the upstream's host.
    pub host: String,
    status: Arc<AtomicU16>,
    faulted: Arc<AtomicU64>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl FaultProxy {
    /// Relays to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = upstream.to_owned();
        let status = Arc::new(AtomicU16::new(0));
        let faulted = Arc::new(AtomicU64::new(0));
        let open = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, fa, op, sp) = (status.clone(), faulted.clone(), open.clone(), stop.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let code = st.load(Ordering::SeqCst);
                if code != 0 {
                    fa.fetch_add(1, Ordering::SeqCst);
                    thread::spawn(move || refuse(client, code));
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                {
                    let mut o = op.lock().unwrap();
                    o.push(client.try_clone().unwrap());
                    o.push(server.try_clone().unwrap());
                }
                relay(client, server);
            }
        });
        FaultProxy {
            host: addr.to_string(),
            status,
            faulted,
            open,
            stop,
            addr,
        }
    }

    /// From now on every request is answered `status` (500, 503, …); open connections are cut.
    pub fn fail_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Relays again.
    pub fn heal(&self) {
        self.status.store(0, Ordering::SeqCst);
    }

    /// Requests answered with a fault status so far.
    pub fn faulted(&self) -> u64 {
        self.faulted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Copies bytes both ways until either side closes.
fn relay(client: TcpStream, server: TcpStream) {
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    thread::spawn(move || pipe(client, server));
    thread::spawn(move || pipe(s2, c2));
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// Reads one request head and answers `status` with a JSON error body, as Distribution does.
fn refuse(client: TcpStream, status: u16) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        if line == "\r\n" {
            break;
        }
        line.clear();
    }
    let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"fault injected by the proxy"}]}"#;
    let mut out = client;
    let _ = write!(
        out,
        "HTTP/1.1 {status} Fault\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = out.shutdown(Shutdown::Write);
}
