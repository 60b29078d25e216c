//! The lab comes up in containers, and its admin API and dashboard behave as Docker publishes
//! them: the token wanted where it should be, foreign hosts and cross-site forms refused, the
//! service name and address answering inside the lab network.

use std::time::{Duration, Instant};

use reqwest::Method;

use crate::checks::{poll, Checks, Step, POLL_EVERY};
use crate::http::{Admin, DashboardFigures};
use crate::lab::{show_matching, show_tail, E2eLab};

/// The services of `deploy/compose.yaml`, sorted.
const COMPOSE_SERVICES: [&str; 12] = [
    "externalized-1",
    "externalized-2",
    "externalized-3",
    "proxy",
    "redis",
    "s3",
    "stateful-1",
    "stateful-2",
    "stateful-3",
    "stateless-1",
    "stateless-2",
    "stateless-3",
];

/// `scripts/lab up --docker` (the images built, offline from Debian packages where no registry
/// answers), its admin token, the root compose file, and all nine replicas healthy. Every later
/// phase needs this, so a failure stops the scenario.
pub async fn up(lab: &E2eLab, checks: &Checks) -> Step<Admin> {
    checks.log(format!(
        "building images and starting project {} (scripts/lab up --docker)",
        lab.project
    ));
    let log = lab.tmp.join("up.log");
    let started = Instant::now();
    if !lab.lab_logged(&["up", "--docker"], &[], &log).await {
        show_tail(&log, 40);
        return Err(checks.abort("scripts/lab up --docker", "it failed (its log above)"));
    }
    checks.pass(format!(
        "images built and lab up in {} s",
        started.elapsed().as_secs()
    ));
    show_matching(&log, &["registry", "offline", "stand-in"]);

    let Some(recorded) = lab.adopt_recorded() else {
        return Err(checks.abort(
            "scripts/lab up --docker recorded the admin token",
            "no admin-token in the lab directory",
        ));
    };
    checks.pass("scripts/lab up --docker recorded the admin token");
    let admin = Admin::new(&lab.admin_url(), &recorded.token);

    let ran = lab.root_compose_services().await;
    let mut services = ran.lines();
    services.sort();
    checks.check(
        format!(
            "docker compose from the repository root reads deploy/compose.yaml (services: {})",
            services.join(" ")
        ),
        services == COMPOSE_SERVICES,
        format!("want {}; {}", COMPOSE_SERVICES.join(" "), ran.why()),
    );

    let healthy = poll(Duration::from_secs(60), POLL_EVERY, || async {
        admin.all_nine_healthy().await.then_some(())
    })
    .await;
    let name = "all nine replicas healthy in the proxy's admin status";
    if healthy.is_none() {
        return Err(checks.abort(name, "not within 60 s"));
    }
    checks.pass(name);
    Ok(admin)
}

/// The admin API's guard from the host (through Docker's port publishing) and from inside the
/// lab network.
pub async fn admin_guard(lab: &E2eLab, admin: &Admin, checks: &Checks) {
    let bearer = admin.bearer();
    let auth = ("authorization", bearer.as_str());
    let want = |name: &str, got: Option<u16>, want: u16| {
        let got_text = got.map_or_else(|| "no answer".into(), |c| c.to_string());
        checks.check(
            name,
            got == Some(want),
            format!("got {got_text}, want {want}"),
        );
    };
    want(
        "admin: GET /admin/ready answers 200 without the token (the compose healthcheck)",
        admin.code(Method::GET, "/admin/ready", &[], None).await,
        200,
    );
    want(
        "admin: GET /admin/status without the token is 401",
        admin.code(Method::GET, "/admin/status", &[], None).await,
        401,
    );
    let rebind = [auth, ("host", "rebind.evil.example:8081")];
    want(
        "admin: a foreign Host (DNS rebinding) is 421, token or not",
        admin
            .code(Method::GET, "/admin/status", &rebind, None)
            .await,
        421,
    );
    let form = [
        auth,
        ("origin", "http://evil.example"),
        ("content-type", "text/plain"),
    ];
    let drain = "/admin/replicas/stateless-1/drain";
    want(
        "admin: a cross-site form POST is 403, token or not",
        admin.code(Method::POST, drain, &form, Some("x")).await,
        403,
    );
    let draining = admin
        .status()
        .await
        .and_then(|s| s.replica("stateless-1").map(|r| r.draining));
    checks.check(
        "admin: and stateless-1 is not draining",
        draining == Some(false),
        format!("draining: {draining:?} (None: not in the admin status)"),
    );

    let by_address = format!("{}.2:8081", lab.net_prefix());
    for host in ["proxy:8081", by_address.as_str()] {
        let code = in_network_code(lab, host).await;
        checks.check(
            format!("admin: from inside the lab network by Host {host}"),
            code == "200",
            format!("got {code}, want 200"),
        );
    }
    // The proxy container's own name: a name the guard does not know.
    let own_name = format!("{}-proxy-1:8081", lab.project);
    let code = in_network_code(lab, &own_name).await;
    checks.check(
        "admin: from inside the lab network by an unknown name (421)",
        code == "421",
        format!("got {code}, want 421"),
    );
}

/// The status line's code of `GET /admin/status` sent to `proxy:8081` from a container on the lab
/// network with the token and `Host: HOST`; what went wrong otherwise.
async fn in_network_code(lab: &E2eLab, host: &str) -> String {
    const SCRIPT: &str = r#"exec 3<>/dev/tcp/proxy/8081 || exit 1
printf 'GET /admin/status HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n' "$1" "$STATELAB_ADMIN_TOKEN" >&3
read -r -t 5 _ code _ <&3 && printf '%s\n' "$code""#;
    let Some(net) = lab.network().await else {
        return "no lab network".into();
    };
    let tag = lab.client_tag();
    let args = [
        "run",
        "--rm",
        "--network",
        &net,
        "--label",
        &tag,
        "-e",
        "STATELAB_ADMIN_TOKEN",
        &lab.image,
        "bash",
        "-c",
        SCRIPT,
        "_",
        host,
    ];
    let ran = lab.docker(&args, Duration::from_secs(60)).await;
    match ran.lines().first() {
        Some(code) if ran.ok => code.clone(),
        _ => format!("no status line ({})", ran.why()),
    }
}

/// The dashboard: its page without the token, its data with it, and in that data every replica's
/// memory and the stateful replicas' sessions (from the health checks' detailed answers).
pub async fn dashboard(admin: &Admin, checks: &Checks) {
    let page = admin.code(Method::GET, "/", &[], None).await;
    checks.check(
        "dashboard: the page at / loads without the token",
        page == Some(200),
        format!("got {page:?}, want 200"),
    );
    let data = admin
        .code(Method::GET, "/admin/dashboard.json", &[], None)
        .await;
    checks.check(
        "dashboard: its data needs the token",
        data == Some(401),
        format!("got {data:?}, want 401"),
    );
    let complete = DashboardFigures {
        replicas: 9,
        memory: 9,
        stateful_sessions: 3,
    };
    // The samples arrive with the health checks: the first seconds may lack some.
    let seen = poll(Duration::from_secs(15), POLL_EVERY, || async {
        let figures = admin.dashboard_figures().await;
        (figures == Some(complete)).then_some(())
    })
    .await;
    let last = admin.dashboard_figures().await;
    let shown = last.map_or_else(
        || "no dashboard data".to_string(),
        |f| format!("{} {} {}", f.replicas, f.memory, f.stateful_sessions),
    );
    checks.check(
        format!(
            "dashboard: nine replicas, each reporting its memory, the stateful ones their \
             sessions ({shown})"
        ),
        seen.is_some(),
        "want 9 9 3 within 15 s (replicas, with memory, stateful with sessions)",
    );
}
