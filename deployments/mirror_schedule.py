"""After `prefect deploy --all` (`make deploy`): the mirror-refresh schedule runs only when it has a spec.

prefect.yaml registers mirror-refresh with its 02:00 cron paused, because a schedule that fires with an
empty `spec` fails every night. This turns it on when `AIRLIFT_MIRROR_SPEC` is set (and says so either
way); without it the deployment stays paused until the spec is set and this runs again, or the schedule
is resumed in the UI after editing the parameters there.
"""

from __future__ import annotations

import os
import sys

DEPLOYMENT = "mirror-refresh/mirror-refresh"


def main() -> int:
    from prefect.client.orchestration import get_client

    wanted = bool(os.environ.get("AIRLIFT_MIRROR_SPEC", "").strip())
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        for schedule in client.read_deployment_schedules(deployment.id):
            if schedule.active != wanted:
                client.update_deployment_schedule(deployment.id, schedule.id, active=wanted)
    if wanted:
        print(f"mirror-refresh: schedule active (0 2 * * * UTC), spec {os.environ['AIRLIFT_MIRROR_SPEC']}")
    else:
        print("mirror-refresh: registered PAUSED: AIRLIFT_MIRROR_SPEC is unset; set it (and AIRLIFT_MIRROR_BUNDLES) "
              "and run `make deploy` again, or set the parameters and resume the schedule in the UI")
    return 0


if __name__ == "__main__":
    sys.exit(main())
