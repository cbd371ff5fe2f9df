//! Compiles an app model and a scenario into the flat tables the simulator steps through every tick.

use load_agent::scenario::{LoadShape, Scenario, WaitTime};

use crate::app::{AppModel, Call};

/// What one request to a route costs each service it reaches.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTouch {
    pub service: usize,
    /// Calls to the service per request (nested counts multiplied).
    pub calls: f64,
    /// CPU milliseconds the service spends per request (all its calls together).
    pub cpu_ms: f64,
}

/// A route flattened: the services it touches and the latency parts that do not depend on load.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledRoute {
    pub touches: Vec<RouteTouch>,
    /// Service and network time with no queueing, in ms (calls are sequential).
    pub base_ms: f64,
    /// Variance of the service times (exponential), in ms².
    pub base_variance_ms2: f64,
    /// The part of `base_ms` that uses no CPU (network, I/O), in ms.
    pub network_ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompiledTask {
    pub probability: f64,
    pub routes: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompiledUserClass {
    pub share: f64,
    pub wait: Option<WaitTime>,
    pub on_start: Vec<usize>,
    pub tasks: Vec<CompiledTask>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub routes: Vec<CompiledRoute>,
    pub users: Vec<CompiledUserClass>,
    pub shape: LoadShape,
    pub timeout_s: f64,
}

impl Workload {
    /// Builds the tables. Both inputs must be validated and every request must match a route.
    pub fn compile(app: &AppModel, scenario: &Scenario) -> Workload {
        let routes = app.routes.iter().map(|route| compile_route(app, route)).collect();
        let total_weight: f64 = scenario.users.iter().map(|u| u.weight as f64).sum();
        let route_of = |request: &load_agent::scenario::Request| {
            app.route_for(scenario, request.kind()).expect("scenario routes checked before compiling")
        };
        let users = scenario
            .users
            .iter()
            .map(|user| {
                let task_weight: f64 = user.tasks.iter().map(|t| t.weight as f64).sum();
                CompiledUserClass {
                    share: user.weight as f64 / total_weight,
                    wait: user.wait,
                    on_start: user.on_start.iter().map(route_of).collect(),
                    tasks: user
                        .tasks
                        .iter()
                        .map(|task| CompiledTask {
                            probability: task.weight as f64 / task_weight,
                            routes: task.requests.iter().map(route_of).collect(),
                        })
                        .collect(),
                }
            })
            .collect();
        Workload { routes, users, shape: scenario.shape.clone(), timeout_s: scenario.request_timeout_s }
    }
}

/// One route's touches and base latency (its followed redirect included).
pub fn compile_route(app: &AppModel, route: &crate::app::Route) -> CompiledRoute {
    let mut compiled = CompiledRoute { touches: Vec::new(), base_ms: 0.0, base_variance_ms2: 0.0, network_ms: 0.0 };
    add_call(app, &route.call, 1.0, &mut compiled);
    if let Some(target) = &route.redirect {
        let target = &app.routes[app.route_index(target).expect("validated redirect")];
        add_call(app, &target.call, 1.0, &mut compiled);
    }
    compiled
}

fn add_call(app: &AppModel, call: &Call, parent_calls: f64, out: &mut CompiledRoute) {
    let service_index = app.service_index(&call.service).expect("validated service");
    let service = &app.services[service_index];
    let calls = parent_calls * call.count;
    let cpu_ms = call.cpu_ms.unwrap_or(service.cpu.per_request_ms);
    // A request runs on one pod, throttled to the pod's CPU limit.
    let service_ms = cpu_ms * 1000.0 / service.cpu.limit_m;
    out.base_ms += calls * (service_ms + service.latency_ms);
    out.base_variance_ms2 += calls * service_ms * service_ms;
    out.network_ms += calls * service.latency_ms;
    match out.touches.iter_mut().find(|t| t.service == service_index) {
        Some(touch) => {
            touch.calls += calls;
            touch.cpu_ms += calls * cpu_ms;
        }
        None => out.touches.push(RouteTouch { service: service_index, calls, cpu_ms: calls * cpu_ms }),
    }
    for child in &call.calls {
        add_call(app, child, calls, out);
    }
}
