//! The app model compiled for serving: call trees as flat node tables, each call's edge (caller → callee) for the
//! per-edge metrics, and the service times the CPU demands imply.

use std::time::Duration;

use crate::app::{AppModel, Call};

/// A service's constants.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub request_m: f64,
    pub limit_m: f64,
    pub idle_m: f64,
    pub memory_request_mib: f64,
    pub memory_limit_mib: f64,
    pub memory_base_mib: f64,
    pub memory_per_inflight_mib: f64,
    pub startup_s: f64,
    /// Time per call that uses no CPU (network, I/O): slept without holding a pod.
    pub latency: Duration,
    pub min: u32,
    pub max: u32,
    pub initial: u32,
}

/// One call site of a call tree.
#[derive(Debug, Clone)]
pub struct Node {
    pub service: usize,
    /// Index into [`CompiledApp::edges`].
    pub edge: usize,
    /// Mean calls per parent call; a fractional part is a probability of one more call.
    pub count: f64,
    /// Mean time the call holds a pod: its CPU demand at the pod's CPU limit, shared by `pod_concurrency` calls.
    pub mean_hold_s: f64,
    /// CPU cores the call uses while it holds the pod (limit / pod_concurrency), to turn hold time into CPU time.
    pub cores_while_held: f64,
    pub children: Vec<usize>,
}

/// A caller → callee pair; `source` is `None` for requests from outside the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub source: Option<usize>,
    pub destination: usize,
}

/// What a route matches and where its call tree starts.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: String,
    pub method: Option<String>,
    pub path: Option<String>,
    /// Redis command, upper case.
    pub redis: Option<String>,
    /// The path a redirect answer points to (a GET route with a fixed path).
    pub location: Option<String>,
    pub root: usize,
}

#[derive(Debug, Clone)]
pub struct CompiledApp {
    pub name: String,
    pub namespace: String,
    pub services: Vec<ServiceSpec>,
    pub nodes: Vec<Node>,
    pub routes: Vec<RouteSpec>,
    pub edges: Vec<Edge>,
}

impl CompiledApp {
    /// Compiles a validated app model; redirect targets must be GET routes with fixed paths (checked when the
    /// matrix is read).
    pub fn compile(app: &AppModel, pod_concurrency: u32) -> CompiledApp {
        let services = app
            .services
            .iter()
            .map(|s| ServiceSpec {
                name: s.name.clone(),
                request_m: s.cpu.request_m,
                limit_m: s.cpu.limit_m,
                idle_m: s.cpu.idle_m,
                memory_request_mib: s.memory.request_mib,
                memory_limit_mib: s.memory.limit_mib,
                memory_base_mib: s.memory.base_mib,
                memory_per_inflight_mib: s.memory.per_inflight_mib,
                startup_s: s.startup_s,
                latency: Duration::from_secs_f64(s.latency_ms / 1000.0),
                min: s.replicas.min,
                max: s.replicas.max,
                initial: s.replicas.initial(),
            })
            .collect();
        let mut compiled = CompiledApp {
            name: app.name.clone(),
            namespace: app.namespace.clone(),
            services,
            nodes: Vec::new(),
            routes: Vec::new(),
            edges: Vec::new(),
        };
        for route in &app.routes {
            let root = compiled.add_call(app, &route.call, None, pod_concurrency);
            let location = route.redirect.as_ref().map(|target| {
                let target = &app.routes[app.route_index(target).expect("validated redirect")];
                target.matcher.path.clone().unwrap_or_else(|| "/".into())
            });
            compiled.routes.push(RouteSpec {
                name: route.name.clone(),
                method: route.matcher.method.clone(),
                path: route.matcher.path.clone(),
                redis: route.matcher.redis.as_ref().map(|c| c.to_ascii_uppercase()),
                location,
                root,
            });
        }
        compiled
    }

    fn edge(&mut self, source: Option<usize>, destination: usize) -> usize {
        let edge = Edge { source, destination };
        match self.edges.iter().position(|e| *e == edge) {
            Some(index) => index,
            None => {
                self.edges.push(edge);
                self.edges.len() - 1
            }
        }
    }

    fn add_call(&mut self, app: &AppModel, call: &Call, caller: Option<usize>, pod_concurrency: u32) -> usize {
        let service = app.service_index(&call.service).expect("validated service");
        let spec = &app.services[service];
        let cpu_ms = call.cpu_ms.unwrap_or(spec.cpu.per_request_ms);
        let concurrency = f64::from(pod_concurrency);
        let edge = self.edge(caller, service);
        let index = self.nodes.len();
        self.nodes.push(Node {
            service,
            edge,
            count: call.count,
            mean_hold_s: cpu_ms / spec.cpu.limit_m * concurrency,
            cores_while_held: spec.cpu.limit_m / 1000.0 / concurrency,
            children: Vec::new(),
        });
        for child in &call.calls {
            let child_index = self.add_call(app, child, Some(service), pod_concurrency);
            self.nodes[index].children.push(child_index);
        }
        index
    }

    pub fn service_index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.name == name)
    }

    /// The name a metric gives an edge's caller: the service, or `unknown` (Istio's word for outside the mesh).
    pub fn source_name(&self, edge: &Edge) -> &str {
        edge.source.map_or("unknown", |s| self.services[s].name.as_str())
    }

    /// True when the app is served over RESP (its routes match Redis commands).
    pub fn speaks_redis(&self) -> bool {
        self.routes.iter().any(|r| r.redis.is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn boutique_cart_tree_and_edges() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/apps/online-boutique.yaml");
        let app = CompiledApp::compile(&AppModel::load(&file).unwrap(), 1);
        let cart = app.routes.iter().find(|r| r.name == "cart").unwrap();
        let root = &app.nodes[cart.root];
        assert_eq!(app.services[root.service].name, "frontend");
        assert_eq!(app.edges[root.edge].source, None);
        // frontend: 1 ms of CPU at its 200m limit holds a pod 5 ms on average.
        assert!((root.mean_hold_s - 0.005).abs() < 1e-12);
        assert_eq!(root.children.len(), 6);
        let redirect = app.routes.iter().find(|r| r.name == "set-currency").unwrap();
        assert_eq!(redirect.location.as_deref(), Some("/"));
        // Every caller → callee pair once.
        for (i, a) in app.edges.iter().enumerate() {
            assert!(!app.edges[i + 1..].contains(a));
        }
        assert!(!app.speaks_redis());
    }
}
