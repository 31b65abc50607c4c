//! The compose file as a Docker Swarm stack on a one-node swarm, with its secret made by
//! `docker secret create`; a frozen catalog is replaced by swarm through its health check.
//!
//! Caveats: initialises a swarm when none is active (and leaves it again only then); skipped
//! (passing, with a line saying why) without docker.

use super::*;

/// A swarm stack of the compose file, and whatever the test changed to run it; all undone on
/// drop.
struct Stack {
    name: String,
    image: String,
    port: u16,
    node: String,
    labels_added: Vec<String>,
    swarm_created: bool,
    /// `docker swarm init` creates this network and `swarm leave` keeps it.
    gwbridge_created: bool,
    /// The Docker secret holding the deployment secret, once created.
    secret: Option<String>,
    client: Client,
}

/// The labels deploy/compose.yaml places its services by.
const NODE_LABELS: [&str; 5] = [
    "bazaar.catalog",
    "bazaar.order1",
    "bazaar.order2",
    "bazaar.order3",
    "bazaar.frontend",
];

impl Stack {
    fn docker(&self, args: &[&str]) -> Output {
        run(Command::new("docker").args(args), DOCKER_TIMEOUT)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn namespace_filter(&self) -> String {
        format!("label=com.docker.stack.namespace={}", self.name)
    }

    fn lines(&self, args: &[&str]) -> Vec<String> {
        String::from_utf8_lossy(&self.docker(args).stdout)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let rm = self.docker(&["stack", "rm", &self.name]);
        if !rm.status.success() {
            eprintln!("docker stack rm {} failed: {}", self.name, text(&rm));
        }
        // Volumes can only go once the containers are gone; the network goes by itself.
        let filter = self.namespace_filter();
        let _ = common::poll(STACK_RM_TIMEOUT, POLL, || {
            (self.lines(&["ps", "-aq", "--filter", &filter]).is_empty()
                && self
                    .lines(&["network", "ls", "-q", "--filter", &filter])
                    .is_empty())
            .then_some(())
        });
        if let Some(secret) = &self.secret {
            let out = self.docker(&["secret", "rm", secret]);
            if !out.status.success() {
                eprintln!("docker secret rm {secret} failed: {}", text(&out));
            }
        }
        for volume in self.lines(&["volume", "ls", "-q", "--filter", &filter]) {
            let out = self.docker(&["volume", "rm", &volume]);
            if !out.status.success() {
                eprintln!("docker volume rm {volume} failed: {}", text(&out));
            }
        }
        let _ = self.docker(&["rmi", &self.image]);
        if self.swarm_created {
            let out = self.docker(&["swarm", "leave", "--force"]);
            if !out.status.success() {
                eprintln!("docker swarm leave failed: {}", text(&out));
            }
            if self.gwbridge_created {
                let _ = self.docker(&["network", "rm", "docker_gwbridge"]);
            }
        } else {
            for label in &self.labels_added {
                let _ = self.docker(&["node", "update", "--label-rm", label, &self.node]);
            }
        }
    }
}

#[test]
fn compose_file_deploys_as_a_swarm_stack() {
    if let Some(why) = docker_unavailable() {
        eprintln!("skipped: {why}; the swarm test needs a Docker engine and docker-compose");
        return;
    }
    let _one_at_a_time = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    let state = run(
        Command::new("docker").args(["info", "--format", "{{.Swarm.LocalNodeState}}"]),
        DOCKER_TIMEOUT,
    );
    let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
    let tag = format!("{}{}", std::process::id(), fastrand::u32(..));
    let mut stack = Stack {
        name: format!("bazaarswarm{tag}"),
        image: format!("stock-bazaar:swarm{tag}"),
        port: free_port(),
        node: String::new(),
        labels_added: Vec::new(),
        swarm_created: false,
        gwbridge_created: false,
        secret: None,
        client: Client::new(),
    };
    match state.as_str() {
        "active" => {}
        "inactive" => {
            let gwbridge = ["network", "ls", "-q", "--filter", "name=^docker_gwbridge$"];
            stack.gwbridge_created = stack.lines(&gwbridge).is_empty();
            let init = stack.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
            assert!(init.status.success(), "docker swarm init: {}", text(&init));
            stack.swarm_created = true;
        }
        other => {
            eprintln!("skipped: this engine's swarm is {other:?}, neither active nor inactive");
            return;
        }
    }
    let node = stack.lines(&["info", "--format", "{{.Swarm.NodeID}}"]);
    stack.node = node.first().cloned().expect("the swarm node id");
    let existing = stack.lines(&[
        "node",
        "inspect",
        "--format",
        "{{json .Spec.Labels}}",
        &stack.node,
    ]);
    let existing = existing.join("");
    for label in NODE_LABELS {
        if !existing.contains(&format!("\"{label}\":\"true\"")) {
            let out = stack.docker(&[
                "node",
                "update",
                "--label-add",
                &format!("{label}=true"),
                &stack.node,
            ]);
            assert!(out.status.success(), "label the node: {}", text(&out));
            stack.labels_added.push(label.to_string());
        }
    }

    let dist = run(
        Command::new("./run.sh").arg("dist").current_dir(root()),
        UP_TIMEOUT,
    );
    assert!(dist.status.success(), "./run.sh dist: {}", text(&dist));
    let build = run(
        Command::new("docker")
            .args([
                "build",
                "--quiet",
                "--file",
                "deploy/Dockerfile",
                "--tag",
                &stack.image,
                ".",
            ])
            .current_dir(root()),
        UP_TIMEOUT,
    );
    assert!(build.status.success(), "docker build: {}", text(&build));
    // The deployment secret as deploy/README.md makes it: a Docker secret of its own.
    let secret_name = format!("{}_secret", stack.name);
    let secret_value = format!("{:032x}", fastrand::u128(..));
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_path = secret_dir.path().join("secret");
    std::fs::write(&secret_path, &secret_value).unwrap();
    let created = stack.docker(&[
        "secret",
        "create",
        &secret_name,
        &secret_path.display().to_string(),
    ]);
    assert!(
        created.status.success(),
        "docker secret create: {}",
        text(&created)
    );
    stack.secret = Some(secret_name.clone());
    let deploy = run(
        Command::new("docker")
            .args([
                "stack",
                "deploy",
                "--compose-file",
                "deploy/compose.yaml",
                &stack.name,
            ])
            .current_dir(root())
            .env("BAZAAR_IMAGE", &stack.image)
            .env("BAZAAR_PUBLISH", stack.port.to_string())
            .env("BAZAAR_SECRET_NAME", &secret_name),
        DOCKER_TIMEOUT,
    );
    assert!(
        deploy.status.success(),
        "docker stack deploy: {}",
        text(&deploy)
    );

    // One task per service, each placed by its label; then a leader behind the published port.
    let services = stack.lines(&[
        "stack",
        "services",
        "--format",
        "{{.Name}} {{.Replicas}}",
        &stack.name,
    ]);
    assert_eq!(services.len(), 5, "{services:?}");
    let addr = stack.addr();
    let leader = wait_for(
        "a leader through the stack's published port",
        STACK_TIMEOUT,
        || {
            stack
                .client
                .get::<FrontendHealth>(&addr, "/health", CALL_TIMEOUT)
                .ok()?
                .leader
        },
    );
    assert!((1..=3).contains(&leader));
    let placed = trade_and_read_back(&stack.client, &addr, "swarm-test");
    assert_eq!(placed.len(), 3);
    assert_internal_endpoint_needs(&addr, &secret_value);

    // A frozen (not crashed) catalog: its health check fails and swarm replaces the task.
    let catalog = format!("{}_catalog", stack.name);
    let container = stack.lines(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={catalog}"),
    ]);
    let container = container.first().expect("the catalog's container").clone();
    let stop = stack.docker(&["kill", "--signal", "STOP", &container]);
    assert!(stop.status.success(), "freeze the catalog: {}", text(&stop));
    wait_for(
        "swarm to replace the frozen catalog",
        REPLACE_TIMEOUT,
        || {
            let tasks = stack.lines(&["service", "ps", "-q", &catalog]);
            (tasks.len() >= 2).then_some(())
        },
    );
    // The new task serves: the front-end's `GET /stocks` always asks the catalog.
    wait_for("the replaced catalog to serve", STACK_TIMEOUT, || {
        stack
            .client
            .get::<Vec<StockRecord>>(&addr, "/stocks", CALL_TIMEOUT)
            .ok()
    });
}
