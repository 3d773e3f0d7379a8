//! Where ONNX Runtime ran each node of a session, from its profile of one run: a JSON array of
//! events, one `"cat": "Node"` event named `<node>_kernel_time` a node, with the provider that
//! ran it in `args.provider`.

use super::Placement;
use std::collections::{BTreeMap, BTreeSet};

pub fn placement(profile: &str) -> anyhow::Result<Placement> {
    let events: Vec<serde_json::Value> = serde_json::from_str(profile)?;
    let mut nodes: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for event in &events {
        let (Some(name), Some(provider)) =
            (event["name"].as_str(), event["args"]["provider"].as_str())
        else {
            continue;
        };
        if event["cat"] == "Node" {
            if let Some(node) = name.strip_suffix("_kernel_time") {
                nodes.entry(short_name(provider)).or_default().insert(node);
            }
        }
    }
    let count = |provider: &str| nodes.get(provider).map_or(0, BTreeSet::len);
    // The GPU provider that ran the most nodes; "cpu" when none ran any.
    let provider = nodes
        .keys()
        .filter(|p| *p != "cpu")
        .max_by_key(|p| count(p))
        .cloned()
        .unwrap_or_else(|| "cpu".to_owned());
    Ok(Placement {
        cpu_nodes: if provider == "cpu" { 0 } else { count("cpu") },
        nodes: nodes.values().map(BTreeSet::len).sum(),
        provider,
        ..Placement::default()
    })
}

/// `CUDAExecutionProvider` -> `cuda`, the names `[engine] backend` uses.
fn short_name(provider: &str) -> String {
    match provider {
        "CPUExecutionProvider" => "cpu".to_owned(),
        "CUDAExecutionProvider" => "cuda".to_owned(),
        "TensorrtExecutionProvider" => "tensorrt".to_owned(),
        other => other.trim_end_matches("ExecutionProvider").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event as ONNX Runtime writes it (fields it adds beside these left out).
    fn node(name: &str, provider: &str) -> serde_json::Value {
        serde_json::json!({"cat": "Node", "name": format!("{name}_kernel_time"),
            "args": {"op_name": "Conv", "provider": provider}})
    }

    #[test]
    fn nodes_left_to_the_cpu_beside_cuda_are_counted() {
        let events = serde_json::json!([
            {"cat": "Session", "name": "model_run", "args": {}},
            node("conv1", "CUDAExecutionProvider"),
            {"cat": "Node", "name": "conv1_fence_before", "args": {"provider": "CUDAExecutionProvider"}},
            node("conv2", "CUDAExecutionProvider"),
            node("shape", "CPUExecutionProvider"),
        ]);
        let placement = placement(&events.to_string()).unwrap();
        assert_eq!(
            placement,
            Placement {
                provider: "cuda".into(),
                cpu_nodes: 1,
                nodes: 3,
                ..Placement::default()
            }
        );
    }

    #[test]
    fn a_gpu_provider_that_ran_nothing_is_not_reported() {
        let events = serde_json::json!([node("conv", "CPUExecutionProvider")]);
        assert_eq!(placement(&events.to_string()).unwrap().provider, "cpu");
    }
}
