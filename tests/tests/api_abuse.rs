//! Control API abuse, through the real binary while it forwards: an endless pcap source
//! sends client traffic that leaves through a tunnel on a `net_null` port (so no output
//! file grows), and this test sends the API what a broken or hostile client would.
//!
//! - (a) an over-long request (`MAX_REQUEST` + 1 bytes without a newline, and a request
//!   smuggled after `MAX_REQUEST` bytes of padding): one error naming the limit, the
//!   connection closed, nothing applied;
//! - (b) truncated requests: JSON cut in the middle, or whole but without its newline,
//!   then the client closes; a client that pauses mid-request and resumes is served, one
//!   that stalls is refused after `REQUEST_STALL`: nothing applied;
//! - (c) malformed JSON, JSON that is not an object, unknown ops, known ops with missing or
//!   wrong-typed fields, a half-bad batch: each an error naming the problem, the
//!   connection still usable, nothing applied;
//! - (d) a client running as another local user (`setpriv`, uid 65534) is refused by the
//!   socket's mode 0600 (EACCES), even with the socket's directory open to it;
//! - (e) through all of it the appliance forwards (its counters keep increasing), and
//!   afterwards a valid change is applied, takes effect on the traffic, and is undone.
//!
//! "Nothing applied" is checked as the same snapshot generation and the same routes,
//! tunnels and neighbours as listed before, once the server has answered the request (or,
//! for a client gone before the answer, once the server counts it refused). Counters are
//! compared only as copies the workers made after the change they should show. The
//! appliance is killed if the test fails.

use backbone_tests::{backbone_bin, file_prefix, scapy, scratch_dir, wait_for, KillOnDrop};
use dataplane::control::server::{MAX_REQUEST, REQUEST_STALL};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long any one wait on the appliance may take.
const PATIENCE: Duration = Duration::from_secs(20);

/// The unprivileged user the other-user client runs as.
const NOBODY: &str = "65534";

/// A change that would be visible: traffic to 10.9.0.5 goes into tunnel "far" until a
/// blackhole covers it.
const BLACKHOLE: &str = r#"{"op":"set_route","route":{"prefix":"10.9.0.0/24","blackhole":true}}"#;

fn config(dir: &Path) -> String {
    format!(
        r#"
[eal]
args = ["--no-huge", "--no-pci", "--no-shconf", "--no-telemetry", "-m", "256", "-l", "0-1",
        "--file-prefix={prefix}", "--log-level=lib.eal:error",
        "--vdev=net_pcap0,rx_pcap={rx},infinite_rx=1",
        "--vdev=net_null0,no-rx=1"]

[workers]
lcores = [1]

[[port]]
name = "client0"
device = "0"
roles = ["client"]
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1"]
  [[port.neighbor]]
  ip = "198.51.100.10"
  mac = "02:00:00:00:0a:0a"

[[port]]
name = "core0"
device = "1"
roles = ["core"]
mac = "02:00:00:00:00:02"
addresses = ["203.0.113.1"]
  [[port.neighbor]]
  ip = "203.0.113.254"
  mac = "02:00:00:00:fe:fe"

[[tunnel]]
name = "acme"
mode = "gre"
local = "192.0.2.1"
remote = "198.51.100.10"
key = 100
port = "client0"
prefixes = ["10.1.0.0/16"]

[[tunnel]]
name = "far"
mode = "gre"
local = "192.0.2.1"
remote = "198.18.0.1"
key = 7
port = "core0"
next_hop = "203.0.113.254"
prefixes = ["10.9.0.0/16"]

[[route]]
prefix = "10.8.0.0/16"
blackhole = true
"#,
        prefix = file_prefix("api-abuse"),
        rx = dir.join("in.pcap").display(),
    )
}

/// One client connection.
struct Api {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Api {
    fn connect(path: &Path) -> Api {
        let s =
            UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Api {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        }
    }

    /// Send raw bytes, read one answer line.
    fn send(&mut self, bytes: &[u8]) -> Value {
        self.writer.write_all(bytes).unwrap();
        self.answer()
    }

    fn answer(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("an answer");
        assert!(n > 0, "the connection closed without an answer");
        assert!(line.ends_with('\n'), "one whole answer line: {line:?}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer {line:?}: {e}"))
    }

    fn call(&mut self, req: &Value) -> Value {
        self.send(format!("{req}\n").as_bytes())
    }

    /// Whether the server has closed the connection: nothing more to read.
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => rest.is_empty(),
            // Closed with our unread bytes still queued on its side.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
            Err(e) => panic!("reading to the end: {e}"),
        }
    }
}

/// Everything a change could alter: the snapshot generation and the tables as listed.
fn state(api: &mut Api) -> Value {
    let mut out = Vec::new();
    for op in [
        "generations",
        "list_routes",
        "list_tunnels",
        "list_neighbors",
    ] {
        let mut r = api.call(&json!({"op": op}));
        assert_eq!(r["ok"], true, "{op}: {r}");
        if op == "generations" {
            r = r["generation"].clone(); // not the workers': they move on their own
        }
        out.push(r);
    }
    Value::Array(out)
}

fn refused(r: &Value, names: &str, what: &str) {
    assert_eq!(r["ok"], false, "{what} must be refused: {r}");
    let e = r["error"].as_str().unwrap_or_else(|| panic!("{what}: {r}"));
    assert!(
        e.contains(names),
        "{what}: the error {e:?} does not say {names:?}"
    );
}

/// What the test reads of the workers' live counters.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Tunnel "far"'s TX packets.
    far: u64,
    /// client0's RX packets.
    rx: u64,
    /// Packets dropped as no_route.
    no_route: u64,
    /// The oldest generation a worker had reached when it copied these counters: what
    /// they leave out was processed under this generation or a newer one.
    since: u64,
}

fn counters(api: &mut Api) -> Seen {
    let c = api.call(&json!({"op": "counters"}));
    assert_eq!(c["ok"], true, "{c}");
    let far = c["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "far")
        .unwrap_or_else(|| panic!("no tunnel far: {c}"))["tx_packets"]
        .as_u64()
        .unwrap();
    let since = c["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("no workers' copies: {c}"))
        .iter()
        .map(|w| w["generation"].as_u64().unwrap_or(0))
        .min()
        .unwrap_or(0);
    Seen {
        far,
        rx: c["ports"][0]["rx_packets"].as_u64().unwrap(),
        no_route: c["drops"]["no_route"].as_u64().unwrap(),
        since,
    }
}

/// Waits until `pick` of the counters exceeds `above`.
fn grows(api: &mut Api, above: u64, pick: fn(&Seen) -> u64, what: &str) -> u64 {
    wait_for(PATIENCE, &format!("{what} above {above}"), || {
        let now = pick(&counters(api));
        if now > above {
            Ok(now)
        } else {
            Err(format!("it stays at {now}: not forwarding"))
        }
    })
}

/// Waits until every worker runs generation `g`.
fn reached(api: &mut Api, g: u64) {
    wait_for(PATIENCE, &format!("every worker at generation {g}"), || {
        let r = api.call(&json!({"op": "generations"}));
        let all = r["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w.as_u64() >= Some(g));
        if all {
            Ok(())
        } else {
            Err(format!("workers stuck: {r}"))
        }
    });
}

/// The server's own count `what` (`api` in the counters answer).
fn api_count(api: &mut Api, what: &str) -> u64 {
    let c = api.call(&json!({"op": "counters"}));
    c["api"][what]
        .as_u64()
        .unwrap_or_else(|| panic!("no api.{what} in {c}"))
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// `backbone ARGS...` as uid and gid 65534 with no groups.
fn as_nobody(bin: &Path, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(bin)
        .args(args)
        .output()
        .expect("run setpriv (util-linux)")
}

#[test]
fn abusive_api_requests_are_refused_without_effect_on_forwarding() {
    let dir = scratch_dir("api-abuse");
    // Open to everybody, so that the other-user client can run the binary copied here
    // and reach the socket's directory: only the socket's own mode stands in its way.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ctl_dir = dir.join("ctl");
    std::fs::create_dir(&ctl_dir).unwrap();
    std::fs::set_permissions(&ctl_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = ctl_dir.join("api.sock");

    // acme's router sends GRE (key 100) from acme's hosts to 10.9.0.5, which is routed
    // into tunnel "far" on the net_null port.
    scapy(&format!(
        "from scapy.all import *\n\
         outer=Ether(src='02:00:00:00:0a:0a',dst='02:00:00:00:00:01')\
             /IP(src='198.51.100.10',dst='192.0.2.1')/GRE(key_present=1,key=100)\n\
         wrpcap('{}', [outer/IP(src='10.1.0.%d'%(i+1),dst='10.9.0.5')\
             /UDP(dport=5001)/Raw(b'x'*32) for i in range(16)])",
        dir.join("in.pcap").display()
    ));
    std::fs::write(dir.join("api-abuse.toml"), config(&dir)).unwrap();

    let mut guard = KillOnDrop(Some(
        Command::new(backbone_bin())
            .current_dir(&dir)
            .args(["run", "--config", "api-abuse.toml", "--control-socket"])
            .arg(&sock)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    wait_for(Duration::from_secs(30), "the control socket", || {
        if let Some(status) = guard.0.as_mut().unwrap().try_wait().unwrap() {
            let mut err = String::new();
            let _ = guard
                .0
                .take()
                .unwrap()
                .stderr
                .unwrap()
                .read_to_string(&mut err);
            panic!("backbone exited ({status}) before its socket appeared:\n{err}");
        }
        if sock.exists() {
            Ok(())
        } else {
            Err(format!("no {}", sock.display()))
        }
    });
    let mut api = Api::connect(&sock);

    // Forwarding before anything else.
    let Seen {
        far: far0, rx: rx0, ..
    } = counters(&mut api);
    let far = grows(&mut api, far0, |c| c.far, "tunnel far's tx");
    assert!(counters(&mut api).rx > rx0, "client0 receives");
    let s0 = state(&mut api);
    let g0 = s0[0].as_u64().unwrap();
    let unchanged = |api: &mut Api, what: &str| {
        assert_eq!(state(api), s0, "{what} changed the tables");
    };

    // A client that stalls mid-request, from now until REQUEST_STALL has passed.
    let stalled = {
        let sock = sock.clone();
        std::thread::spawn(move || {
            let mut s = Api::connect(&sock);
            s.writer.write_all(&BLACKHOLE.as_bytes()[..20]).unwrap();
            let sent = Instant::now();
            let r = s.answer();
            (r, sent.elapsed(), s.closed())
        })
    };

    // (a) Over-long: MAX_REQUEST + 1 bytes with no newline. The line starts as a valid
    // change, so that a server cutting it at the limit would have something to apply.
    {
        let mut big = BLACKHOLE.trim_end_matches('}').to_owned();
        big.push_str(r#","pad":""#);
        let mut bytes = big.into_bytes();
        bytes.resize(MAX_REQUEST + 1, b'x');
        let mut c = Api::connect(&sock);
        let r = c.send(&bytes);
        refused(
            &r,
            &format!("request exceeds {MAX_REQUEST} bytes"),
            "an over-long request",
        );
        assert!(
            c.closed(),
            "the connection is closed after an over-long request"
        );
        unchanged(&mut api, "an over-long request");
    }
    // A request smuggled after MAX_REQUEST bytes of padding: never read as a request.
    {
        let mut bytes = vec![b' '; MAX_REQUEST];
        bytes.extend_from_slice(BLACKHOLE.as_bytes());
        bytes.push(b'\n');
        let mut c = Api::connect(&sock);
        // The server stops reading at the limit and closes: the rest may not go out.
        let _ = c.writer.write_all(&bytes);
        let r = c.answer();
        refused(
            &r,
            &format!("request exceeds {MAX_REQUEST} bytes"),
            "a padded request",
        );
        assert!(c.closed(), "one answer, then the connection is closed");
        unchanged(&mut api, "a request after MAX_REQUEST bytes of padding");
    }
    // Exactly MAX_REQUEST bytes is within the limit (here: not JSON, but read whole).
    {
        let mut bytes = vec![b' '; MAX_REQUEST - 2];
        bytes.extend_from_slice(b"[]\n");
        let mut c = Api::connect(&sock);
        let r = c.send(&bytes);
        refused(&r, "not a JSON object", "MAX_REQUEST bytes");
        let r = c.call(&json!({"op": "generations"}));
        assert_eq!(r["ok"], true, "the connection goes on: {r}");
        unchanged(&mut api, "a request of MAX_REQUEST bytes");
    }

    // (b) Truncated requests.
    for (what, bytes, half_close) in [
        ("JSON cut in the middle", &BLACKHOLE.as_bytes()[..40], true),
        (
            "a whole change without its newline",
            BLACKHOLE.as_bytes(),
            true,
        ),
    ] {
        let mut c = Api::connect(&sock);
        c.writer.write_all(bytes).unwrap();
        if half_close {
            c.writer.shutdown(Shutdown::Write).unwrap();
        }
        let r = c.answer();
        refused(&r, "cut short", what);
        assert!(c.closed(), "{what}: closed");
        unchanged(&mut api, what);
    }
    {
        // Cut, and the client is gone at once: nobody to answer, but the server reads
        // the request all the same and counts it refused as cut.
        let cut = api_count(&mut api, "cut");
        let mut c = Api::connect(&sock);
        c.writer.write_all(&BLACKHOLE.as_bytes()[..40]).unwrap();
        drop(c);
        let now = wait_for(
            PATIENCE,
            "the server to refuse the vanished client's request",
            || match api_count(&mut api, "cut") {
                n if n > cut => Ok(n),
                n => Err(format!("api.cut stays at {n}")),
            },
        );
        assert_eq!(now, cut + 1, "one cut request refused");
        unchanged(&mut api, "a cut request from a vanished client");
    }
    {
        // A pause longer than the server's read timeout (200 ms) in the middle of a
        // request is not a cut: the request is served when it is complete.
        let mut c = Api::connect(&sock);
        c.writer.write_all(br#"{"op":"gener"#).unwrap();
        // Pacing, not waiting: this pause is what is tested.
        std::thread::sleep(Duration::from_millis(1000));
        let r = c.send(b"ations\"}\n");
        assert_eq!(r["ok"], true, "a paused request is served: {r}");
        assert_eq!(r["generation"], g0);
    }

    // (c) Malformed, not an object, unknown, wrong-typed: an error each, the connection
    // goes on, nothing applied.
    let tunnel = |extra: (&str, Value)| {
        let mut t = json!({"name": "evil", "mode": "gre", "local": "192.0.2.1",
                           "remote": "198.51.100.99", "port": "client0", "key": 5});
        t[extra.0] = extra.1;
        json!({"op": "add_tunnel", "tunnel": t}).to_string()
    };
    let deep = "[".repeat(100_000);
    let cases: Vec<(String, &str)> =
        vec![
        ("this is not JSON".into(), "request is not JSON"),
        (r#"{"op":"set_route""#.into(), "request is not JSON"),
        (r#"{"op":"list_routes"} trailing"#.into(), "request is not JSON"),
        (String::new(), "request is not JSON"),
        (deep, "request is not JSON"),
        ("[1,2,3]".into(), "not a JSON object"),
        (r#""list_routes""#.into(), "not a JSON object"),
        ("42".into(), "not a JSON object"),
        ("null".into(), "not a JSON object"),
        ("{}".into(), r#"missing field "op""#),
        (r#"{"op":5}"#.into(), r#""op" must be a string, not a number"#),
        (r#"{"op":["set_route"]}"#.into(), r#""op" must be a string, not an array"#),
        (r#"{"op":"frobnicate"}"#.into(), r#"unknown op "frobnicate""#),
        (r#"{"op":"set_route"}"#.into(), "expected a [[route]] table"),
        (
            r#"{"op":"set_route","route":"10.9.0.0/24"}"#.into(),
            "expected a [[route]] table",
        ),
        (
            r#"{"op":"set_route","route":["10.9.0.0/24","far"]}"#.into(),
            "expected a [[route]] table",
        ),
        (
            r#"{"op":"set_route","route":{"prefix":10}}"#.into(),
            "invalid type: integer `10`, expected a string",
        ),
        (
            r#"{"op":"set_route","route":{"prefix":"10.9.0.0/24","blackhole":"yes"}}"#.into(),
            r#"invalid type: string "yes", expected a boolean"#,
        ),
        (
            r#"{"op":"set_route","route":{"prefix":"10.9.0.0/24","tunnel":"far","colour":"red"}}"#
                .into(),
            "unknown field `colour`",
        ),
        (
            r#"{"op":"set_route","route":{"prefix":"10.9.0.1/24","blackhole":true}}"#.into(),
            r#"route[1].prefix: "10.9.0.1/24" has host bits set"#,
        ),
        (
            r#"{"op":"set_route","route":{"prefix":"10.9.0.0/24","tunnel":"nope"}}"#.into(),
            r#"route[1].tunnel: "nope" is not a configured tunnel"#,
        ),
        (r#"{"op":"remove_route","prefix":42}"#.into(), r#"missing string field "prefix""#),
        (r#"{"op":"remove_route","prefix":"10.7.0.0/16"}"#.into(), "has no route"),
        (
            tunnel(("key", json!("100"))),
            r#"invalid type: string "100", expected i64"#,
        ),
        (tunnel(("sequence", json!(1))), "invalid type: integer `1`, expected a boolean"),
        (tunnel(("key", json!(1u64 << 40))), "is not a 32-bit key"),
        (
            tunnel(("remote", json!("192.0.2.1"))),
            r#"tunnel[2] "evil".remote: 192.0.2.1 is our own address"#,
        ),
        (tunnel(("name", json!("acme"))), "is already a tunnel"),
        (
            r#"{"op":"add_tunnel","tunnel":["evil","gre","192.0.2.1","198.51.100.99"]}"#.into(),
            "expected a [[tunnel]] table",
        ),
        (r#"{"op":"remove_tunnel","name":7}"#.into(), r#"missing string field "name""#),
        (
            r#"{"op":"set_neighbor","port":"client0","ip":"198.51.100.99","mac":7}"#.into(),
            r#"missing string field "mac""#,
        ),
        (
            json!({"op": "set_neighbor", "port": "client0", "ip": "198.51.100.99",
                   "mac": "zz:00:00:00:00:01"})
            .to_string(),
            r#"port[0] "client0".neighbor[1].mac: "zz:00:00:00:00:01" is not a MAC address"#,
        ),
        (
            r#"{"op":"set_neighbor","port":"nope","ip":"198.51.100.99","mac":"02:00:00:00:00:09"}"#
                .into(),
            "is not a configured port",
        ),
        (
            r#"{"op":"batch","ops":{"op":"list_routes"}}"#.into(),
            r#"missing array field "ops""#,
        ),
        (
            // The first change is good, the second is not: the batch applies nothing.
            json!({"op": "batch", "ops": [
                serde_json::from_str::<Value>(BLACKHOLE).unwrap(),
                {"op": "set_route", "route": {"prefix": "10.9.1.0/24", "blackhole": "x"}},
            ]})
            .to_string(),
            "change 1 (set_route 10.9.1.0/24): route.blackhole: invalid type",
        ),
        (r#"{"op":"batch","ops":[7]}"#.into(), r#"missing string field "op""#),
        (r#"{"op":"lookup","dst":[1]}"#.into(), r#""dst" must be an IPv4 or IPv6 address"#),
        (
            r#"{"op":"apply_config","path":"/nonexistent/backbone.toml"}"#.into(),
            "/nonexistent/backbone.toml",
        ),
    ];
    let n_cases = cases.len();
    for (request, names) in cases {
        let r = api.send(format!("{request}\n").as_bytes());
        let shown: String = request.chars().take(120).collect();
        refused(&r, names, &shown);
        unchanged(&mut api, &shown);
    }
    // Bytes that are not UTF-8.
    let r = api.send(b"{\"op\":\"\xff\xfe\"}\n");
    refused(&r, "request is not JSON", "invalid UTF-8");
    unchanged(&mut api, "invalid UTF-8");

    // (d) Another local user: refused by the socket's mode, though its directory is open.
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket mode");
    if is_root() {
        let bin = dir.join("backbone");
        std::fs::copy(backbone_bin(), &bin).unwrap();
        let s = sock.to_str().unwrap();
        // The other user can run the client at all.
        let help = as_nobody(&bin, &["ctl", "--help"]);
        assert!(
            help.status.success(),
            "uid {NOBODY} cannot run {}: {}",
            bin.display(),
            String::from_utf8_lossy(&help.stderr)
        );
        for args in [
            vec![
                "ctl",
                "--socket",
                s,
                "route-add",
                "10.9.0.0/24",
                "--blackhole",
            ],
            vec!["ctl", "--socket", s, "routes"],
        ] {
            let out = as_nobody(&bin, &args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "uid {NOBODY} got through: {args:?}");
            assert!(
                err.contains("Permission denied") && err.contains("os error 13"),
                "{args:?}: not EACCES: {err}"
            );
            unchanged(&mut api, "a request from another user");
        }
        // The same client as the socket's owner gets through.
        let out = Command::new(&bin)
            .args(["ctl", "--socket", s, "routes"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!(
            "api_abuse: not root, so no client can run as another user; \
             checked the socket's mode only"
        );
    }

    // The stalled client was refused and closed, having applied nothing.
    let (r, after, closed) = stalled.join().expect("the stalled client's thread");
    refused(&r, "request incomplete", "a stalled request");
    assert!(after >= REQUEST_STALL, "refused after {after:?}");
    assert!(
        after < REQUEST_STALL + Duration::from_secs(5),
        "refused after {after:?}"
    );
    assert!(closed, "a stalled client is disconnected");
    unchanged(&mut api, "a stalled request");

    // (e) Still forwarding, after all of that.
    let far = grows(&mut api, far, |c| c.far, "tunnel far's tx after the abuse");
    assert!(
        guard.0.as_mut().unwrap().try_wait().unwrap().is_none(),
        "backbone is running"
    );

    // A valid change is applied and takes effect: the blackhole takes far's traffic.
    let r = api.send(format!("{BLACKHOLE}\n").as_bytes());
    assert_eq!(r["ok"], true, "a valid change after the abuse: {r}");
    assert_eq!(r["generation"], g0 + 1, "{r}");
    reached(&mut api, g0 + 1);
    // Counters copied once every worker had reached the blackhole: they hold every packet
    // that went into far before it, and whatever goes in later is the blackhole's fault.
    let then = wait_for(
        PATIENCE,
        "counters copied under the blackhole's generation",
        || match counters(&mut api) {
            c if c.since > g0 => Ok(c),
            c => Err(format!("{c:?}")),
        },
    );
    // Then many packets to far's destination, dropped under the blackhole.
    let after = wait_for(
        PATIENCE,
        "50,000 no_route drops under the blackhole",
        || match counters(&mut api) {
            c if c.no_route >= then.no_route + 50_000 => Ok(c),
            c => Err(format!("{c:?}, {then:?} when the blackhole was in place")),
        },
    );
    assert_eq!(
        after.far, then.far,
        "nothing enters tunnel far while the blackhole covers its destination"
    );
    let far_then = then.far;
    assert!(far_then >= far);
    let r = api.call(&json!({"op": "remove_route", "prefix": "10.9.0.0/24"}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["generation"], g0 + 2, "{r}");
    reached(&mut api, g0 + 2);
    grows(
        &mut api,
        far_then,
        |c| c.far,
        "tunnel far's tx once the blackhole is gone",
    );
    // The server's own count of what it refused, and why.
    let c = api.call(&json!({"op": "counters"}));
    let refused = &c["api"];
    assert_eq!(refused["too_long"], 2, "over-long and padded: {refused}");
    assert_eq!(refused["cut"], 3, "2 truncated, 1 vanished: {refused}");
    assert_eq!(refused["stalled"], 1, "{refused}");
    assert_eq!(
        refused["errors"],
        n_cases + 2,
        "every malformed request, MAX_REQUEST bytes of not an object, invalid UTF-8: {refused}"
    );
    drop(api);

    // A clean stop.
    let out = guard.stop("TERM", Duration::from_secs(30));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {log}", out.status);
    assert!(!log.contains("panicked"), "{log}");
    println!(
        "api_abuse: refused {} malformed requests, 2 over-long (1 at the limit read whole), \
         3 truncated, 1 stalled (1 paused served), 2 from another user; forwarding throughout",
        n_cases + 1
    );
}
