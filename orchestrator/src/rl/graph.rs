//! The call graph as the GNN sees it: a row-normalized adjacency per direction, and per-node inputs.
//!
//! `from_callers[i][j] = 1 / (callers of i)` if `j` calls `i`: multiplying node features by it averages what a
//! service's callers see. `from_callees` is the same the other way. Services with no caller (callee) get zeros.

use crate::rl::features::GraphObservation;

#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedAdjacency {
    pub num_nodes: usize,
    /// `n × n`, row-major: row `i` averages over the callers of `i`.
    pub from_callers: Vec<f32>,
    /// `n × n`, row-major: row `i` averages over the callees of `i`.
    pub from_callees: Vec<f32>,
}

impl NormalizedAdjacency {
    pub fn new(num_nodes: usize, edges: &[(usize, usize)]) -> NormalizedAdjacency {
        let n = num_nodes;
        let mut from_callers = vec![0.0f32; n * n];
        let mut from_callees = vec![0.0f32; n * n];
        for &(caller, callee) in edges {
            from_callers[callee * n + caller] = 1.0;
            from_callees[caller * n + callee] = 1.0;
        }
        for matrix in [&mut from_callers, &mut from_callees] {
            for row in matrix.chunks_mut(n.max(1)) {
                let degree: f32 = row.iter().sum();
                if degree > 0.0 {
                    row.iter_mut().for_each(|v| *v /= degree);
                }
            }
        }
        NormalizedAdjacency { num_nodes: n, from_callers, from_callees }
    }

    /// The transpose of a row-major `n × n` matrix (the GNN multiplies by `Âᵀ` on the right).
    pub fn transposed(matrix: &[f32], n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                out[j * n + i] = matrix[i * n + j];
            }
        }
        out
    }
}

/// Extra per-node inputs of the GNN besides the node features: mean rate of incoming and of outgoing edges.
pub const NODE_EDGE_INPUTS: usize = 2;

/// The GNN's input row of every node: node features, mean incoming and outgoing edge rate, global features.
/// Returns `num_nodes × width` values, row-major.
pub fn node_inputs(observation: &GraphObservation) -> Vec<f32> {
    let n = observation.num_nodes;
    let node_width = observation.nodes.len() / n.max(1);
    let edge_width =
        if observation.edges.is_empty() { 0 } else { observation.edge_features.len() / observation.edges.len() };
    let mut incoming = vec![(0.0f32, 0u32); n];
    let mut outgoing = vec![(0.0f32, 0u32); n];
    for (e, &(from, to)) in observation.edges.iter().enumerate() {
        // The first edge feature is the rate.
        let rate = observation.edge_features[e * edge_width];
        incoming[to].0 += rate;
        incoming[to].1 += 1;
        outgoing[from].0 += rate;
        outgoing[from].1 += 1;
    }
    let mean = |(sum, count): (f32, u32)| if count == 0 { 0.0 } else { sum / count as f32 };
    let mut out = Vec::with_capacity(n * (node_width + NODE_EDGE_INPUTS + observation.global.len()));
    for i in 0..n {
        out.extend_from_slice(observation.node(i));
        out.push(mean(incoming[i]));
        out.push(mean(outgoing[i]));
        out.extend_from_slice(&observation.global);
    }
    out
}
