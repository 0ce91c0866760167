"""Which version answers a visitor: the served one, or their experiment arm's.

The router follows the repository's experiment file (:mod:`fashionrec.repository.experiments`): every
``experiment.refresh_s`` it is read again, so an experiment starts and stops without a restart, and each
arm's version is read once (its products, trending order and candidate sets: the fallback of that arm's
pages, so a Triton failure in one arm never shows another arm's products). A visitor outside an active
experiment, or every visitor when there is none, gets the served version through the plain ensembles.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fashionrec.config import ExperimentConfig, ServingConfig
from fashionrec.online.served import ServedView
from fashionrec.repository.experiments import Arm, Experiment, read_experiment


@dataclass(frozen=True)
class Route:
    """Where one page's Triton calls go, and what its impressions and events are tagged with."""

    view: ServedView  # the version's products, trending order and candidate sets
    version: int | None = None  # an arm's version (its own ensembles); None: the plain, served ensembles
    experiment: str | None = None
    arm: Arm | None = None

    @property
    def arm_name(self) -> str | None:
        return self.arm.name if self.arm else None

    @property
    def similar_alpha(self) -> float | None:
        return self.arm.similar_alpha if self.arm else None

    @property
    def exploration_share(self) -> float | None:
        """The arm's exploration share (None: the service's ``online.exploration_share``)."""
        return self.arm.exploration_share if self.arm else None


class ExperimentRouter:
    """The repository's experiment and its arms' views, re-read by :meth:`refresh`."""

    def __init__(self, model_repository: str, serving: ServingConfig, config: ExperimentConfig,
                 clock: Callable[[], float] = time.time) -> None:
        self._repository, self._serving, self._config, self._clock = model_repository, serving, config, clock
        self.experiment: Experiment | None = None
        self._views: dict[int, ServedView] = {}

    def refresh(self) -> Experiment | None:
        """Read the experiment file again (blocking I/O: call it off the event loop) and each new arm version's
        view. A file that fails to read or check keeps the experiment as it was, and raises."""
        experiment = read_experiment(self._repository, self._config)
        views = {version: self._views.get(version) or ServedView.read(self._repository, self._serving, version)
                 for version in (experiment.versions() if experiment else [])}
        self.experiment, self._views = experiment, views
        return experiment

    def route(self, unit: str, served: ServedView) -> Route:
        """The route of a visitor (``unit``: customer id or ``session:<id>``) now."""
        experiment = self.experiment
        if experiment is None or not experiment.active(self._clock()):
            return Route(served)
        arm = experiment.arm_for(unit)
        view = self._views.get(arm.version)
        if view is None:  # not read yet (a refresh mid-way): the served version, untagged
            return Route(served)
        return Route(view, arm.version, experiment.name, arm)
