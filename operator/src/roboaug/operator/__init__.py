"""roboaug operator: AugmentationJob -> batch/v1 Job on the pool of its augmentation type.

Layout (business logic in plain functions; only `handlers`, `controller`, `kube` and
`leader` talk to a cluster):

- `config`     operator configuration (the Helm values' ConfigMap), pydantic, with defaults
- `pools`      which pool runs which augmentation type
- `jobs`       renders the worker's batch/v1 Job
- `observe`    turns Job/Pod bodies into small summaries the decisions read
- `phases`     the phase-history bookkeeping (the only code that changes `status.phases`)
- `errors`     exit code + worker message -> `status.error`; scheduler reasons
- `reconcile`  decide(): observed state -> status and actions (pure), the order of its steps
- `steps`      the steps of decide(), each a plain function of one `decision.Decision`
- `decision`   what decide() reads (`Observed`), returns (`Plan`) and its steps share
- `controller` runs decide() per CR (coalesced, one at a time per CR) and applies its plan
- `handlers`   the kopf decorators: the table of contents of what the operator watches
- `kube`       the few Kubernetes calls the operator makes (counted, for the benchmark)
- `leader`     a coordination.k8s.io Lease so only one replica acts at a time
- `metrics`, `logs`, `__main__`
"""
