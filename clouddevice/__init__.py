"""Operator-level split of one LLM between a device and the cloud (the cloud-device paper).

Reproduces Yang et al., "Efficient Deployment of Large Language Model across Cloud-Device
Systems" (../shared/papers/cloud-device-llm-deployment-paper.md). Division of labour:

- `graph`: the per-layer, per-operator graph of a decoder (its Table I), built from a model
  config by `nodes.roofline.operator_costs`, with the tensors that flow between operators;
- `hardware`: Eq. 8 per operator, the efficiency a PCHIP spline over arithmetic intensity from
  measured points, or the catalogue's constant efficiencies as the documented fallback;
- `cpu_bench`: the GEMM/GEMV micro-benchmark of this machine's CPU and the model's error on it;
- `placement`: a side per operator, its latency, cloud cost, link crossings, device memory and
  the plan a node pair would execute;
- `greedy`: Algorithm 1 and the baselines (device-only, cloud-only, layer-wise best cut);
- `evaluate`, `plots`: the sweep of both hardware groups, Fig. 6 and Fig. 7 analogues and the
  results folder; `__main__`: `python -m clouddevice {run,place,bench-cpu,hw-error}`.
"""
