//! The dashboard in a real browser: headless Chromium driven through chromedriver (WebDriver),
//! offline, against the real proxy binary, real `stateful` service processes and in-process
//! backends, all on ephemeral ports. Assertions read the DOM (`data-replica`, `data-state`, the
//! timeline's `data-kind`, the replicas' CPU text), the layout's measures in a 1280-pixel window
//! and the admin API, never pixels.
//!
//! Without chromedriver the test fails and names the packages, unless `STATELAB_SKIP_BROWSER=1`
//! asks to leave it out; `scripts/test` installs `chromium` and `chromium-driver` as root, and sets
//! that only where it cannot, naming the test in its summary.

#[allow(dead_code)]
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use statelab_test_support::backend::CpuReport;
use statelab_test_support::{eventually, free_port, lab_bin_dir, TempDir};
use support::{backends, client_from, spawn_proxy, PoolSpec, Proxy};
use tokio::process::{Child, Command};

const TOKEN: &str = "dashboard-test-token";
/// How long the page may take to show a change the proxy already knows: one sample a second and
/// one poll a second, with room for a slow CI machine.
const SHOWN_WITHIN: Duration = Duration::from_secs(10);
/// The window the page must fit without scrolling sideways.
const WINDOW: (u32, u32) = (1280, 900);

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// chromedriver on a free port, with its browser's profile in a private directory; killed on drop.
struct Driver {
    child: Child,
    url: String,
    profile: TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts chromedriver. Without it the test fails, unless `STATELAB_SKIP_BROWSER=1` asks to leave it
/// out: then it returns `None` after saying so.
async fn chromedriver() -> Option<Driver> {
    let path = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| find_on_path("chromedriver"));
    let Some(path) = path else {
        assert!(
            std::env::var_os("STATELAB_SKIP_BROWSER").is_some_and(|v| v == "1"),
            "chromedriver is not installed: apt-get install -y chromium chromium-driver \
             (scripts/test does as root), or set STATELAB_SKIP_BROWSER=1 to leave this test out"
        );
        eprintln!(
            "NOT RUN: the dashboard browser test (STATELAB_SKIP_BROWSER=1; it needs chromium and \
             chromium-driver)"
        );
        return None;
    };
    let port = free_port();
    let child = Command::new(&path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually("chromedriver ready", Duration::from_secs(15), || async {
        let r = http.get(format!("{url}/status")).send().await.ok()?;
        let v: Value = r.json().await.ok()?;
        (v["value"]["ready"] == true).then_some(())
    })
    .await;
    Some(Driver {
        child,
        url,
        profile: TempDir::new("chromium-profile"),
    })
}

async fn browser(driver: &Driver) -> Client {
    let mut args = vec![
        "--headless=new".to_string(),
        "--no-sandbox".to_string(),
        "--disable-gpu".to_string(),
        "--disable-dev-shm-usage".to_string(),
        format!("--window-size={},{}", WINDOW.0, WINDOW.1),
        format!("--user-data-dir={}", driver.profile.path().display()),
    ];
    args.push("--no-first-run".to_string());
    let mut options = json!({ "args": args });
    if let Some(chromium) = ["chromium", "chromium-browser"]
        .iter()
        .find_map(|n| find_on_path(n))
    {
        options["binary"] = json!(chromium);
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".to_string(), options);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("open a Chromium session through chromedriver: {e}"))
}

/// A real `stateful` service process on a free port; killed on drop.
struct Service {
    child: Child,
    name: String,
    addr: SocketAddr,
}

async fn stateful(name: &str) -> Service {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = Command::new(lab_bin_dir().join("stateful"))
        .args(["--listen", &addr.to_string(), "--replica", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the stateful service");
    let http = reqwest::Client::new();
    eventually(
        &format!("{name} answering"),
        Duration::from_secs(15),
        || async {
            let r = http
                .get(format!("http://{addr}/health"))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    Service {
        child,
        name: name.to_string(),
        addr,
    }
}

/// Runs `script` in the page and returns its value.
async fn js(page: &Client, script: &str) -> Value {
    page.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("run {script:?} in the page: {e}"))
}

/// The page's layout in the window: its document fits the window's width, the pools stand side
/// by side, and each pool's large chart is at least 260 pixels tall with labels of 14 or more.
async fn fits_the_window(page: &Client, pools: usize) {
    let m = js(
        page,
        "const charts = [...document.querySelectorAll('section.pool svg.pool-chart')];\
         const labels = charts.flatMap(c => [...c.querySelectorAll('text')]);\
         return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth,\
           tops: [...document.querySelectorAll('section.pool')].map(s => s.getBoundingClientRect().top),\
           charts: charts.map(c => { const r = c.getBoundingClientRect();\
             return {pool: c.dataset.pool, height: r.height, right: r.right}; }),\
           labels: labels.length,\
           smallest: Math.min(...labels.map(t => parseFloat(getComputedStyle(t).fontSize)))};",
    )
    .await;
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    assert!(
        num(&m["inner"]) <= f64::from(WINDOW.0),
        "the viewport is no wider than the window: {m}"
    );
    assert!(
        num(&m["scroll"]) <= num(&m["inner"]),
        "the page scrolls sideways in a {}-pixel window: {m}",
        WINDOW.0
    );
    let tops = m["tops"].as_array().cloned().unwrap_or_default();
    assert_eq!(tops.len(), pools, "{m}");
    assert!(
        tops.iter().all(|t| (num(t) - num(&tops[0])).abs() < 1.0),
        "the pools stand side by side: {m}"
    );
    let charts = m["charts"].as_array().cloned().unwrap_or_default();
    assert_eq!(charts.len(), pools, "one large chart per pool: {m}");
    for c in &charts {
        assert!(num(&c["height"]) >= 260.0, "a large chart: {m}");
        assert!(
            num(&c["right"]) <= num(&m["inner"]),
            "inside the window: {m}"
        );
    }
    assert!(num(&m["labels"]) > 0.0, "the charts have axis labels: {m}");
    assert!(
        num(&m["smallest"]) >= 14.0,
        "labels readable from afar: {m}"
    );
}

/// The text and level of a replica card's CPU figure.
async fn cpu(page: &Client, replica: &str) -> (String, String) {
    let v = js(
        page,
        &format!(
            "const td = document.querySelector('tr[data-replica=\"{replica}\"] td.cpu');\
             return td ? [td.querySelector('.cpu-text').textContent, td.dataset.level] : ['', ''];"
        ),
    )
    .await;
    serde_json::from_value(v).unwrap_or_default()
}

/// Every replica row's `data-state`, by `data-replica`.
async fn states(page: &Client) -> HashMap<String, String> {
    let v = js(
        page,
        "return Object.fromEntries([...document.querySelectorAll('tr[data-replica]')]\
         .map(e => [e.dataset.replica, e.dataset.state]));",
    )
    .await;
    serde_json::from_value(v).unwrap_or_default()
}

/// The timeline's entries of one kind, as (replica, pool, text).
async fn timeline(page: &Client, kind: &str) -> Vec<Value> {
    let v = js(
        page,
        &format!(
            "return [...document.querySelectorAll('#timeline li[data-kind=\"{kind}\"]')]\
             .map(e => ({{replica: e.dataset.replica || null, pool: e.dataset.pool, text: e.textContent}}));"
        ),
    )
    .await;
    v.as_array().cloned().unwrap_or_default()
}

/// A pool's balance factor as the page shows it: the label's `data-factor` and `data-applies`,
/// the input's value, state and title, the note beside it, and the bounded moves figure.
async fn balance(page: &Client, pool: &str) -> Value {
    js(
        page,
        &format!(
            "const label = document.querySelector('section[data-pool=\"{pool}\"] label.balance');\
             const input = document.querySelector('input.balance-factor[data-pool=\"{pool}\"]');\
             const moves = document.querySelector('section[data-pool=\"{pool}\"] .moves');\
             if (!label || !input || !moves) return null;\
             return {{factor: label.dataset.factor, applies: label.dataset.applies,\
               value: input.value, disabled: input.disabled, title: input.title,\
               note: label.querySelector('.balance-note').textContent,\
               moves: moves.dataset.moves, count: moves.dataset.count, movesText: moves.textContent}};"
        ),
    )
    .await
}

/// A pool of `/admin/status`.
async fn status_pool(proxy: &Proxy, pool: &str) -> Option<Value> {
    let status = proxy.status().await;
    status["pools"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == pool)
        .cloned()
}

/// Types `text` into a pool's balance factor input and leaves it with Tab, which fires its
/// `change` event.
async fn type_factor(page: &Client, pool: &str, text: &str) {
    page.find(Locator::Css(&format!(
        "input.balance-factor[data-pool=\"{pool}\"]"
    )))
    .await
    .expect("the balance factor input")
    .send_keys(&format!("{text}{}", char::from(Key::Tab)))
    .await
    .unwrap_or_else(|e| panic!("type {text:?} into {pool}'s balance factor: {e}"));
}

async fn wait_state(page: &Client, replica: &str, state: &str) {
    eventually(
        &format!("the page showing {replica} {state}"),
        SHOWN_WITHIN,
        || async {
            (states(page).await.get(replica).map(String::as_str) == Some(state)).then_some(())
        },
    )
    .await;
}

/// Logs `n` clients in to the stateful pool through the proxy, and groups the `Cookie` header
/// each must send (its session and the proxy's affinity cookie) by the replica that served it.
async fn logged_in(proxy: &Proxy, n: usize) -> HashMap<String, Vec<String>> {
    let client = client_from(None);
    let mut by_replica: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..n {
        let r = client
            .post(proxy.url("/stateful/login"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"username":"user{i}"}}"#))
            .send()
            .await
            .expect("log in through the proxy");
        assert_eq!(r.status(), 200, "login");
        let replica = r
            .headers()
            .get("x-replica")
            .and_then(|v| v.to_str().ok())
            .expect("the replica's name")
            .to_string();
        let cookies: Vec<&str> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next())
            .collect();
        assert!(
            cookies.len() >= 2,
            "a session and an affinity cookie: {cookies:?}"
        );
        by_replica
            .entry(replica)
            .or_default()
            .push(cookies.join("; "));
    }
    by_replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_the_lab_live_and_its_controls_work() {
    let Some(driver) = chromedriver().await else {
        return;
    };
    let mut services = [stateful("stateful-1").await, stateful("stateful-2").await];
    let mut stateless = backends("stateless", 3).await;
    // Two backends report CPU as a statelab service in a control group would: one near its
    // budget, one well within it.
    stateless[0].report_cpu(Some(CpuReport {
        use_millis: 190,
        budget_millis: Some(200),
    }));
    stateless[1].report_cpu(Some(CpuReport {
        use_millis: 50,
        budget_millis: Some(200),
    }));
    let stateful_pool = PoolSpec {
        name: "stateful",
        strategy: "cookie",
        replicas: services.iter().map(|s| (s.name.as_str(), s.addr)).collect(),
        trusted_proxies: Vec::new(),
        discover: None,
    };
    let proxy = spawn_proxy(
        &[
            stateful_pool,
            PoolSpec::new("stateless", "round-robin", &stateless),
        ],
        &format!("admin_token = \"{TOKEN}\""),
    )
    .await;
    let page = browser(&driver).await;
    page.set_window_size(WINDOW.0, WINDOW.1)
        .await
        .expect("a 1280×900 window");
    page.goto(&format!("http://{}/", proxy.admin))
        .await
        .expect("open the dashboard");

    // The admin API wants a token: the page asks once and keeps it for this tab.
    let input = page
        .wait()
        .at_most(SHOWN_WITHIN)
        .for_element(Locator::Css("#token-form:not([hidden]) #token-input"))
        .await
        .expect("the page asks for the admin token");
    input.send_keys(TOKEN).await.expect("type the token");
    page.find(Locator::Css("#token-form button"))
        .await
        .expect("the token form's button")
        .click()
        .await
        .expect("submit the token");
    let in_url = js(&page, "return location.href;").await;
    assert!(!in_url.to_string().contains(TOKEN), "{in_url}");

    // Every replica appears, up, with its stable attributes.
    let all = [
        "stateful-1",
        "stateful-2",
        "stateless-1",
        "stateless-2",
        "stateless-3",
    ];
    eventually("every replica shown up", SHOWN_WITHIN, || async {
        let s = states(&page).await;
        all.iter()
            .all(|r| s.get(*r).map(String::as_str) == Some("up"))
            .then_some(())
    })
    .await;
    // Each replica's CPU against its budget: two reports make a figure.
    eventually(
        "stateless-1's CPU near its budget",
        SHOWN_WITHIN,
        || async {
            let shown = cpu(&page, "stateless-1").await;
            (shown == ("CPU 0.19 / 0.20 core".to_string(), "high".to_string())).then_some(())
        },
    )
    .await;
    eventually(
        "stateless-2's CPU within its budget",
        SHOWN_WITHIN,
        || async {
            let shown = cpu(&page, "stateless-2").await;
            (shown == ("CPU 0.05 / 0.20 core".to_string(), "ok".to_string())).then_some(())
        },
    )
    .await;
    // A real service reports its own: an idle process, bounded or not by this machine's group.
    let (text, level) = eventually("stateful-1's CPU shown", SHOWN_WITHIN, || async {
        let shown = cpu(&page, "stateful-1").await;
        (shown.1 != "unreported" && !shown.0.is_empty()).then_some(shown)
    })
    .await;
    let figure = text.strip_prefix("CPU ").unwrap_or_default();
    let first: f64 = figure
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number of cores: {text:?}"));
    assert!((0.0..=64.0).contains(&first), "{text:?}");
    assert!(
        figure.ends_with(" core") || figure.ends_with(" cores"),
        "{text:?}"
    );
    assert!(
        ["ok", "high", "unbounded"].contains(&level.as_str()),
        "{level}"
    );
    fits_the_window(&page, 2).await;

    // Each pool shows its balance factor: off on both; the cookie pool's input takes one, the
    // round-robin pool's is disabled and says which strategies it applies to.
    let cookie = eventually(
        "the stateful pool's balance factor",
        SHOWN_WITHIN,
        || async {
            let b = balance(&page, "stateful").await;
            (b["applies"] == "true").then_some(b)
        },
    )
    .await;
    assert_eq!(cookie["factor"], "off", "{cookie}");
    assert_eq!(cookie["value"], "", "{cookie}");
    assert_eq!(cookie["disabled"], false, "{cookie}");
    assert_eq!(cookie["moves"], "off", "{cookie}");
    let rr = balance(&page, "stateless").await;
    assert_eq!(rr["applies"], "false", "{rr}");
    assert_eq!(rr["disabled"], true, "{rr}");
    for text in [&rr["title"], &rr["note"]] {
        let text = text.as_str().unwrap_or_default();
        assert!(
            text.contains("applies to") && text.contains("ip-hash") && text.contains("cookie"),
            "{rr}"
        );
    }

    // The stateful replicas report their sessions.
    eventually("sessions held shown", SHOWN_WITHIN, || async {
        let v = js(&page, "return document.querySelector('tr[data-replica=\"stateful-1\"]').dataset.figure || null;").await;
        (v == "sessions held").then_some(())
    })
    .await;

    // A request stream (marked as statelab-load's) raises the replicas' rates and shows a run.
    let streaming = Arc::new(AtomicBool::new(true));
    let stream = {
        let streaming = Arc::clone(&streaming);
        let url = proxy.url("/stateless/items");
        tokio::spawn(async move {
            let client = client_from(None);
            while streaming.load(Ordering::Relaxed) {
                let _ = client.get(&url).header("x-statelab-load", "1").send().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    eventually("stateless rates above 10/s", SHOWN_WITHIN, || async {
        let v = js(&page, "return Number(document.querySelector('tr[data-replica=\"stateless-1\"]').dataset.rps);").await;
        (v.as_f64().unwrap_or(0.0) > 10.0).then_some(())
    })
    .await;
    eventually("the stream on the pool's large chart", SHOWN_WITHIN, || async {
        let v = js(
            &page,
            "const s = document.querySelector('section[data-pool=\"stateless\"]');\
             return [Number(s.dataset.rps), s.querySelector('svg.pool-chart path.big.rps').getAttribute('d')];",
        )
        .await;
        let rps = v[0].as_f64().unwrap_or(0.0);
        let drawn = v[1].as_str().is_some_and(|d| d.contains('L'));
        (rps > 10.0 && drawn).then_some(())
    })
    .await;
    eventually("the load run shown", SHOWN_WITHIN, || async {
        let v = js(
            &page,
            "return document.querySelector('section[data-pool=\"stateless\"] .load').dataset.load;",
        )
        .await;
        (v == "on").then_some(())
    })
    .await;

    // A killed backend turns down, and the timeline says so with the reason.
    stateless.pop().expect("three backends").kill().await;
    wait_state(&page, "stateless-3", "down").await;
    eventually("a down event for stateless-3", SHOWN_WITHIN, || async {
        let down = timeline(&page, "down").await;
        down.iter()
            .find(|e| e["replica"] == "stateless-3")
            .filter(|e| {
                e["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("health check"))
            })
            .map(|_| ())
    })
    .await;

    // A stateful replica that dies takes its sessions: its clients, moved to the other, get 401s,
    // and the page shows a 401 burst.
    let clients = logged_in(&proxy, 24).await;
    let http = client_from(None);
    let (victim, lost) = clients
        .iter()
        .max_by_key(|(_, c)| c.len())
        .expect("someone served the logins");
    let victim_service = services
        .iter_mut()
        .find(|s| &s.name == victim)
        .expect("the victim is one of ours");
    victim_service.child.start_kill().expect("kill the replica");
    let _ = victim_service.child.wait().await;
    let burst = eventually("a 401 burst on the stateful pool", SHOWN_WITHIN, || async {
        for cookie in lost {
            let _ = http
                .get(proxy.url("/stateful/me"))
                .header("cookie", cookie)
                .send()
                .await;
        }
        timeline(&page, "burst-401").await.first().cloned()
    })
    .await;
    assert_eq!(burst["pool"], "stateful", "{burst}");
    let note = js(
        &page,
        "return document.querySelector('#events-section .note').textContent;",
    )
    .await;
    assert!(note.to_string().contains("lost-sessions signal"), "{note}");
    wait_state(&page, victim, "down").await;

    // A click on drain drains.
    page.find(Locator::Css(
        "tr[data-replica=\"stateless-1\"] button[data-action=\"drain\"]",
    ))
    .await
    .expect("the drain button")
    .click()
    .await
    .expect("click drain");
    eventually(
        "stateless-1 draining in /admin/status",
        SHOWN_WITHIN,
        || async { (proxy.replica("stateless-1").await["draining"] == true).then_some(()) },
    )
    .await;
    wait_state(&page, "stateless-1", "draining").await;
    eventually("a drain event", SHOWN_WITHIN, || async {
        timeline(&page, "drain").await.first().map(|_| ())
    })
    .await;

    // The strategy selector switches the pool's strategy.
    page.find(Locator::Css("select.strategy[data-pool=\"stateless\"]"))
        .await
        .expect("the strategy selector")
        .select_by_value("ip-hash")
        .await
        .expect("choose ip-hash");
    eventually("stateless on ip-hash", SHOWN_WITHIN, || async {
        let status = proxy.status().await;
        let pool = status["pools"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == "stateless")?
            .clone();
        (pool["strategy"] == "ip-hash").then_some(())
    })
    .await;
    eventually("a strategy event", SHOWN_WITHIN, || async {
        let e = timeline(&page, "strategy").await;
        e.iter()
            .find(|e| e["text"].as_str().is_some_and(|t| t.contains("ip-hash")))
            .map(|_| ())
    })
    .await;

    // On ip-hash the pool's balance factor input takes a value.
    eventually("the balance factor input enabled", SHOWN_WITHIN, || async {
        let b = balance(&page, "stateless").await;
        (b["applies"] == "true" && b["disabled"] == false && b["note"] == "").then_some(())
    })
    .await;
    // A value out of range is refused on the page, and nothing is sent.
    type_factor(&page, "stateless", "90").await;
    let error = eventually("the page refusing 90", SHOWN_WITHIN, || async {
        let v = js(
            &page,
            "const e = document.getElementById('error'); return e.hidden ? null : e.textContent;",
        )
        .await;
        v.as_str().map(str::to_string)
    })
    .await;
    assert!(error.contains("from 100 to 1000"), "{error}");
    assert_eq!(
        balance(&page, "stateless").await["value"],
        "",
        "back to off"
    );
    // A valid one goes to the proxy, the page and the timeline.
    type_factor(&page, "stateless", "125").await;
    eventually(
        "stateless with balance factor 125",
        SHOWN_WITHIN,
        || async {
            let pool = status_pool(&proxy, "stateless").await?;
            (pool["balance_factor"] == 125 && pool["strategy"] == "ip-hash").then_some(())
        },
    )
    .await;
    eventually("a balance-factor event", SHOWN_WITHIN, || async {
        timeline(&page, "balance-factor")
            .await
            .iter()
            .find(|e| {
                e["pool"] == "stateless"
                    && e["text"].as_str().is_some_and(|t| t.contains("off → 125"))
            })
            .map(|_| ())
    })
    .await;
    let on = eventually("the page showing factor 125", SHOWN_WITHIN, || async {
        let b = balance(&page, "stateless").await;
        (b["factor"] == "125" && b["moves"] == "on").then_some(b)
    })
    .await;
    assert_eq!(on["value"], "125", "{on}");
    let count = on["count"].as_str().unwrap_or_default();
    assert!(count.parse::<u64>().is_ok(), "a number of moves: {on}");
    assert!(
        on["movesText"]
            .as_str()
            .is_some_and(|t| t.contains("bounded moves")),
        "{on}"
    );
    assert_eq!(
        js(&page, "return document.getElementById('error').hidden;").await,
        true,
        "the accepted value clears the earlier refusal"
    );
    // Emptied, it turns the factor off.
    page.find(Locator::Css(
        "input.balance-factor[data-pool=\"stateless\"]",
    ))
    .await
    .expect("the balance factor input")
    .clear()
    .await
    .expect("empty the balance factor");
    eventually("stateless with no balance factor", SHOWN_WITHIN, || async {
        let pool = status_pool(&proxy, "stateless").await?;
        pool["balance_factor"].is_null().then_some(())
    })
    .await;
    eventually(
        "a balance-factor event turning it off",
        SHOWN_WITHIN,
        || async {
            timeline(&page, "balance-factor")
                .await
                .iter()
                .find(|e| e["text"].as_str().is_some_and(|t| t.contains("125 → off")))
                .map(|_| ())
        },
    )
    .await;
    eventually("the page showing the factor off", SHOWN_WITHIN, || async {
        let b = balance(&page, "stateless").await;
        (b["factor"] == "off" && b["moves"] == "off" && b["value"] == "").then_some(())
    })
    .await;

    streaming.store(false, Ordering::Relaxed);
    let _ = stream.await;
    // With every card, a timeline and the charts drawn, the page still fits the window.
    fits_the_window(&page, 2).await;
    let png = page.screenshot().await.expect("a screenshot");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&out, &png).expect("save the screenshot");
    eprintln!("screenshot: {}", out.display());
    page.close().await.expect("close the browser");
}
