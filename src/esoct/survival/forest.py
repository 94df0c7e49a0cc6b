"""Random survival forest with the longitudinal paper's settings (400 trees, node size 10, mtry 4, log-rank)."""

from __future__ import annotations

from numbers import Integral

from sksurv.ensemble import RandomSurvivalForest

#: The forest of Hu et al. (2026), grown there with randomForestSRC:
#: ``rfsrc(ntree = 400, nodesize = 10, mtry = 4, splitrule = "logrank")``.
#: ``nodesize = 10`` is translated by :func:`nodesize_params` (see :func:`paper_rsf`).
PAPER_NODESIZE = 10

PAPER_RSF_SETTINGS = {
    "n_estimators": 400,
    "min_samples_split": 2 * PAPER_NODESIZE,
    "min_samples_leaf": 1,
    "max_features": 4,
    "bootstrap": True,
}


def nodesize_params(nodesize: int) -> dict:
    """scikit-survival tree parameters that reproduce randomForestSRC's ``nodesize`` rule.

    randomForestSRC splits a node only if it holds at least ``2 * nodesize`` (in-bag)
    cases and then accepts any split whose two daughters are non-empty; see
    :func:`paper_rsf` for the source.

    Parameters
    ----------
    nodesize : int
        randomForestSRC's ``nodesize`` (positive).

    Returns
    -------
    dict
        ``{"min_samples_split": 2 * nodesize, "min_samples_leaf": 1}``.
    """
    if isinstance(nodesize, bool) or not isinstance(nodesize, Integral) or nodesize < 1:
        raise ValueError(f"nodesize must be a positive integer, got {nodesize!r}")
    return {"min_samples_split": 2 * int(nodesize), "min_samples_leaf": 1}


class PaperRandomSurvivalForest(RandomSurvivalForest):
    """scikit-survival's RandomSurvivalForest whose integer ``max_features`` is capped at the number of features.

    randomForestSRC silently uses ``mtry = min(mtry, p)``; scikit-survival raises
    ``max_features must be in (0, n_features]``. This subclass clips an integer
    ``max_features`` to ``n_features`` for the duration of :meth:`fit` and records the
    value used in ``max_features_used_``; ``get_params`` still reports the value the
    user asked for, so ``clone`` and grid searches see the constructor argument unchanged.
    Every other parameter and method is the parent's (same constructor signature).

    Attributes
    ----------
    max_features_used_ : int or str or float or None
        The ``max_features`` the trees were grown with.
    """

    def fit(self, X, y, sample_weight=None):
        """Grow the forest; an integer ``max_features`` above ``n_features`` is treated as ``n_features``.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            Covariates.
        y : structured array, shape (n_samples,)
            Event indicator (first field) and time (second field), scikit-survival style.
        sample_weight : array-like, optional
            Passed to :meth:`sksurv.ensemble.RandomSurvivalForest.fit`.

        Returns
        -------
        self
        """
        requested = self.max_features
        n_features = X.shape[1] if hasattr(X, "shape") and len(X.shape) == 2 else None
        clipped = requested
        if (
            n_features is not None
            and isinstance(requested, Integral)
            and not isinstance(requested, bool)
            and requested > n_features
        ):
            clipped = int(n_features)
        self.max_features = clipped
        try:
            super().fit(X, y, sample_weight=sample_weight)
        finally:
            self.max_features = requested
        self.max_features_used_ = clipped
        return self


def paper_rsf(random_state: int | None = 0, **overrides) -> PaperRandomSurvivalForest:
    """The random survival forest of the longitudinal ESCC paper, as a scikit-survival estimator.

    The paper grows ``randomForestSRC::rfsrc`` with 400 trees, a terminal node size of 10,
    4 candidate variables per split and log-rank splitting. The mapping to
    :class:`sksurv.ensemble.RandomSurvivalForest` is:

    ``ntree = 400`` -> ``n_estimators=400``.

    ``mtry = 4`` -> ``max_features=4``, capped at the number of features at fit time
    (randomForestSRC's behaviour), see :class:`PaperRandomSurvivalForest`.

    ``splitrule = "logrank"`` -> scikit-survival's only split criterion for survival trees,
    the log-rank statistic (Ishwaran et al. 2008, Eq. 2). randomForestSRC evaluates
    ``nsplit = 10`` random split points per candidate variable by default (version >= 2.x);
    scikit-survival evaluates every split point ("best" splitter). This is the one
    algorithmic difference left; it makes scikit-survival's trees slightly greedier.

    ``nodesize = 10`` -> ``min_samples_split=20, min_samples_leaf=1`` (:func:`nodesize_params`).
    The manual calls ``nodesize`` the "minimum size of terminal node", but the C code of
    randomForestSRC 3.x does something else: ``getPreSplitResultGeneric`` refuses to split
    a node holding fewer than ``2 * nodesize`` in-bag replicates, and the log-rank split
    search (``logRankNCR``) accepts any split point whose daughters are both non-empty
    (``leftSize != 0 && rghtSize != 0``). A daughter may therefore end up with fewer than
    ``nodesize`` cases; it is simply not split further (in version 1.x the manual called
    ``nodesize`` the forest *average* terminal node size). The parent rule
    is exactly scikit-survival's ``min_samples_split = 2 * nodesize``; the daughter rule is
    ``min_samples_leaf = 1``. Setting ``min_samples_leaf=10`` instead would be a stricter
    forest than the paper's (no terminal node below 10), a reasonable choice but not the
    one the paper ran. scikit-survival counts distinct in-bag patients (bootstrap
    replicates enter as weights), randomForestSRC counts replicates; with sampling
    without replacement they coincide.

    Bootstrap: ``bootstrap=True`` draws ``n`` patients *with* replacement per tree (the
    original RSF of Ishwaran et al. 2008 and scikit-survival's only option);
    randomForestSRC's current default draws ``0.632 n`` *without* replacement
    (``samptype = "swor"``). Both leave about 36.8 % of patients out of bag.

    ``n_jobs``: left at scikit-survival's default (``None``, one thread) unless
    overridden. The trees' seeds are drawn from ``random_state`` before the parallel
    loop, so every ``n_jobs`` grows the same trees (predictions agree up to the summation
    order of the ensemble average, ~1e-16 relative).

    Parameters
    ----------
    random_state : int or None
        Seed of the bootstrap samples and of the candidate variables.
    **overrides
        Any :class:`~sksurv.ensemble.RandomSurvivalForest` parameter, e.g.
        ``n_estimators=50`` in tests, ``n_jobs=-1``, ``low_memory=True``, or
        ``**nodesize_params(15)`` for another node size.

    Returns
    -------
    PaperRandomSurvivalForest
        Unfitted.

    References
    ----------
    .. [1] Hu X, Maitudi W, Chen X, Zhao L, Pang Q. Longitudinal CT-based deep learning
       radiomics for predicting prognosis in esophageal squamous cell carcinoma treated
       with definitive chemoradiotherapy: a two-center study. J Cancer 2026;17:808.
    .. [2] Ishwaran H, Kogalur UB, Blackstone EH, Lauer MS. Random survival forests.
       Ann Appl Stat 2008;2(3):841-860.
    .. [3] Ishwaran H, Kogalur UB. randomForestSRC (github.com/kogalur/randomForestSRC):
       ``src/splitUtil.c`` ``getPreSplitResultGeneric`` (split only if ``repMembrSize >=
       2 * RF_nodeSize``) and ``src/splitSurv.c`` ``logRankNCR`` (daughters non-empty).
    """
    params = {**PAPER_RSF_SETTINGS, "random_state": random_state}
    params.update(overrides)
    return PaperRandomSurvivalForest(**params)
