"""sklearn classifiers for label transfer, including per-cluster ("local") logistic regression."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid

EMBEDDING_METHODS = ("logreg", "knn", "centroid", "local_logreg")
# Whitening gives noisy trailing components the weight of the leading ones: linear models and
# centroids cope, neighbour graphs (knn, Leiden clusters of local_logreg) do not.
WHITENED_METHODS = ("logreg", "centroid")
DEFAULT_C = 1.0
MAX_ITER = 1000


def make_classifier(
    method: str,
    *,
    class_weight: str | None = "balanced",
    C: float = DEFAULT_C,
    n_neighbors: int = 15,
    resolution: float = 1.0,
    min_cluster_size: int = 30,
    random_state: int = 0,
):
    """The sklearn estimator behind ``transfer_labels(method=...)`` for an embedding."""
    logreg = LogisticRegression(C=C, class_weight=class_weight, max_iter=MAX_ITER, random_state=random_state)
    if method == "logreg":
        return logreg
    if method == "knn":
        return KNeighborsClassifier(n_neighbors=n_neighbors, weights="distance")
    if method == "centroid":
        return NearestCentroid()
    if method == "local_logreg":
        return LocalLogisticRegression(
            logreg,
            n_neighbors=n_neighbors,
            resolution=resolution,
            min_cluster_size=min_cluster_size,
            random_state=random_state,
        )
    raise ValueError(f"method must be one of {(*EMBEDDING_METHODS, 'sctop')}, got {method!r}.")


def leiden_clusters(
    embedding: np.ndarray, *, n_neighbors: int, resolution: float, random_state: int
) -> np.ndarray:
    """Leiden cluster code per row of ``embedding`` on its symmetric kNN graph (scanpy, igraph backend)."""
    import anndata as ad
    import scanpy as sc
    from sklearn.neighbors import kneighbors_graph

    n_neighbors = max(1, min(n_neighbors, embedding.shape[0] - 1))
    # an exact sklearn kNN graph: small references do not need (nor wait for) pynndescent/umap
    adjacency = kneighbors_graph(embedding, n_neighbors, mode="connectivity", include_self=False)
    adjacency = adjacency.maximum(adjacency.T).tocsr()
    cells = pd.DataFrame(index=np.arange(embedding.shape[0]).astype(str))
    graph_data = ad.AnnData(obs=cells)
    sc.tl.leiden(
        graph_data,
        adjacency=adjacency,
        resolution=resolution,
        flavor="igraph",
        n_iterations=2,
        directed=False,
        random_state=random_state,
    )
    return graph_data.obs["leiden"].astype(int).to_numpy()


class LocalLogisticRegression(ClassifierMixin, BaseEstimator):
    """Per-cluster classifiers with a global fallback (the Souza–Mehta local variant).

    The training cells are clustered with Leiden; each cluster with at least
    ``min_cluster_size`` cells gets its own copy of ``estimator`` (a cluster holding a single
    class predicts that class). New cells are assigned to clusters by a kNN vote among the
    training cells and use their cluster's model, or the global model fitted on all cells
    when the cluster has none. Every cell gets a prediction.

    Parameters
    ----------
    estimator
        Unfitted sklearn classifier with ``predict_proba`` (cloned for each model).
    n_neighbors
        Neighbours for the Leiden graph and for assigning new cells.
    resolution
        Leiden resolution.
    min_cluster_size
        Smallest cluster that gets its own model.
    random_state
        Seed for the graph and Leiden.
    """

    def __init__(
        self,
        estimator=None,
        *,
        n_neighbors: int = 15,
        resolution: float = 1.0,
        min_cluster_size: int = 30,
        random_state: int = 0,
    ):
        self.estimator = estimator
        self.n_neighbors = n_neighbors
        self.resolution = resolution
        self.min_cluster_size = min_cluster_size
        self.random_state = random_state

    def fit(self, X, y):
        X, y = np.asarray(X), np.asarray(y)
        estimator = self.estimator if self.estimator is not None else LogisticRegression(max_iter=MAX_ITER)
        self.global_model_ = clone(estimator).fit(X, y)
        self.classes_ = self.global_model_.classes_
        clusters = leiden_clusters(
            X, n_neighbors=self.n_neighbors, resolution=self.resolution, random_state=self.random_state
        )
        self.cluster_assigner_ = KNeighborsClassifier(n_neighbors=min(self.n_neighbors, len(y))).fit(
            X, clusters
        )
        self.local_models_ = {}
        for cluster in np.unique(clusters):
            members = clusters == cluster
            if members.sum() < self.min_cluster_size:
                continue
            present = np.unique(y[members])
            self.local_models_[cluster] = (
                present[0] if present.size == 1 else clone(estimator).fit(X[members], y[members])
            )
        return self

    def assign_clusters(self, X) -> np.ndarray:
        """Training cluster of each new cell (kNN vote)."""
        return self.cluster_assigner_.predict(np.asarray(X))

    def predict_proba(self, X) -> np.ndarray:
        X = np.asarray(X)
        proba = self.global_model_.predict_proba(X)
        clusters = self.assign_clusters(X)
        for cluster, model in self.local_models_.items():
            members = clusters == cluster
            if not members.any():
                continue
            local = np.zeros((members.sum(), self.classes_.size))
            if isinstance(model, BaseEstimator):
                local[:, np.searchsorted(self.classes_, model.classes_)] = model.predict_proba(X[members])
            else:
                local[:, np.searchsorted(self.classes_, model)] = 1.0
            proba[members] = local
        return proba

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
