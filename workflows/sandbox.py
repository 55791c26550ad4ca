"""The workflow sandbox, with one deliberate opening: building a ZoneInfo.

Timezone arithmetic is deterministic for a given tzdata, and the plan needs it
(send windows in the owner's timezone). The default sandbox proxies ZoneInfo, which
`datetime.astimezone` then rejects. Every worker and replayer uses this runner.
"""

import dataclasses

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

RESTRICTIONS = dataclasses.replace(
    SandboxRestrictions.default,
    invalid_module_members=SandboxRestrictions.invalid_module_members_default.with_child_unrestricted(
        "zoneinfo", "ZoneInfo"
    ),
)


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(restrictions=RESTRICTIONS)
