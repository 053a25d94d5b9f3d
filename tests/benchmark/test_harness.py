import numpy as np
import pandas as pd
import pytest
from tests.benchmark.conftest import labelled_counts
from tests.conftest import read_shared

from cellrep.benchmark import (
    METHODS,
    TASKS,
    Method,
    cellrep_method,
    make_splits,
    results_table,
    run_benchmark,
    summarize,
)
from cellrep.benchmark._methods import DEFAULT_METHODS, resolve_methods
from cellrep.benchmark._run import COLUMNS, novel_type_scores

FAST_METHODS = ["cellrep_log_logreg", "cellrep_rank_probit_centroid", "scanpy"]


def test_within_splits_are_stratified_disjoint_and_hide_labels(labelled):
    splits = make_splits(labelled, "cell_type", tasks=["within"], seeds=[0, 1])
    assert [split.split for split in splits] == ["seed0", "seed1"]
    for split in splits:
        assert split.train.n_obs == 72
        assert split.test.n_obs == 18
        assert set(split.train.obs_names).isdisjoint(split.test.obs_names)
        assert "cell_type" not in split.test.obs
        assert pd.Series(split.truth).value_counts().tolist() == [6, 6, 6]
        np.testing.assert_array_equal(
            split.truth, labelled[split.test.obs_names].obs["cell_type"].astype(str)
        )
    assert set(splits[0].test.obs_names) != set(splits[1].test.obs_names)


def test_leave_one_batch_out_holds_out_each_batch(labelled):
    splits = make_splits(labelled, "cell_type", tasks=["leave_one_batch_out"])
    assert [split.split for split in splits] == ["b0", "b1"]
    for split in splits:
        assert (split.train.obs["batch"] != split.split).all()
        assert (split.test.obs["batch"] == split.split).all()
    single_batch = labelled.copy()
    single_batch.obs["batch"] = "only"
    assert make_splits(single_batch, "cell_type", tasks=["leave_one_batch_out"]) == []


def test_cross_species_renames_genes_and_keeps_shared_labels(human_mouse):
    human, mouse = human_mouse
    mouse = mouse[mouse.obs["cell_type"] != "type2"].copy()
    (split,) = make_splits(
        human,
        "cell_type",
        tasks=["cross_species"],
        query=mouse,
        query_name="mouse",
        orthologs="mouse_ortholog",
        dataset="human",
    )
    assert split.task == "cross_species"
    assert split.dataset == "human->mouse"
    assert list(split.train.var_names) == list(split.test.var_names)
    assert all(name.startswith("M") for name in split.train.var_names)
    assert split.train.n_vars == sum(1 for j in range(human.n_vars) if j % 7)
    assert set(split.train.obs["cell_type"].astype(str)) == set(split.truth) == {"type0", "type1"}
    with pytest.raises(ValueError, match="share no genes"):
        make_splits(human, "cell_type", tasks=["cross_dataset"], query=mouse)
    with pytest.raises(ValueError, match="Unknown tasks"):
        make_splits(human, "cell_type", tasks=["nope"])


def test_cross_dataset_keeps_shared_genes_in_reference_order_and_shared_labels(labelled):
    query = labelled_counts(60, seed=3)
    query = query[:, np.random.default_rng(0).permutation(query.n_vars)[:30]].copy()
    labels = query.obs["cell_type"].astype(str).to_numpy()
    labels[labels == "type2"] = "novel"
    query.obs["cell_type"] = labels
    (split,) = make_splits(
        labelled, "cell_type", tasks=["cross_dataset"], query=query, query_name="q", dataset="d"
    )
    assert (split.task, split.dataset, split.split) == ("cross_dataset", "d->q", "all")
    assert list(split.train.var_names) == [
        name for name in labelled.var_names if name in set(query.var_names)
    ]
    assert list(split.test.var_names) == list(split.train.var_names)
    assert set(split.truth) == set(split.train.obs["cell_type"].astype(str)) == {"type0", "type1"}
    assert split.test.n_obs == 40
    results = run_benchmark(
        labelled,
        "cell_type",
        methods=["cellrep_default"],
        tasks=["cross_dataset"],
        query=query,
        progress=False,
    )
    assert results.loc[0, "error"] == ""
    assert results.loc[0, "macro_f1"] > 0.9


def test_cross_dataset_applies_the_overlap_rule_of_transfer_labels(labelled):
    """USERTEST3: the harness refuses and warns on the same shared-gene figures as cr.tl.transfer_labels."""
    query = labelled_counts(60, seed=3)
    with pytest.raises(ValueError, match=r"Only 10 genes are shared .* at least 20 are needed"):
        make_splits(labelled, "cell_type", tasks=["cross_dataset"], query=query[:, :10].copy())
    with pytest.warns(UserWarning, match=r"Only 30 genes are shared by the reference \(40 genes\)"):
        (split,) = make_splits(labelled, "cell_type", tasks=["cross_dataset"], query=query[:, 10:].copy())
    assert list(split.train.var_names) == [f"g{j}" for j in range(10, 40)]


def test_run_benchmark_gives_a_tidy_table(labelled):
    results = run_benchmark(
        labelled, "cell_type", methods=FAST_METHODS, tasks=["within"], seeds=[0, 1], progress=False
    )
    assert list(results.columns) == list(COLUMNS)
    assert len(results) == 2 * len(FAST_METHODS)
    assert (results["error"] == "").all(), results["error"].tolist()
    assert results["macro_f1"].between(0, 1).all()
    assert results["accuracy"].between(0, 1).all()
    assert (results.loc[results["method"] == "cellrep_log_logreg", "macro_f1"] > 0.9).all()
    assert (results[["fit_seconds", "predict_seconds", "peak_memory_mb"]] > 0).all().all()
    summary = summarize(results)
    assert len(summary) == len(FAST_METHODS)
    assert (summary["n_splits"] == 2).all()
    table = results_table(results)
    assert table.startswith("| task | dataset | method | macro F1")
    assert all(method in table for method in FAST_METHODS)
    assert " ± " in table


def test_methods_never_see_test_labels_or_test_cells_in_training(labelled):
    seen = {}

    def fit(train, labels_key, seed):
        seen["train"] = set(train.obs_names)
        return train.obs[labels_key].astype(str).mode()[0]

    def predict(majority, test):
        seen["test_columns"] = set(test.obs.columns)
        seen["test"] = set(test.obs_names)
        return np.full(test.n_obs, majority)

    spy = Method("majority", fit, predict)
    results = run_benchmark(labelled, "cell_type", methods=[spy], tasks=["within"], seeds=[0], progress=False)
    assert seen["train"].isdisjoint(seen["test"])
    assert "cell_type" not in seen["test_columns"]
    assert results.loc[0, "accuracy"] == pytest.approx(1 / 3)


def test_a_failing_method_is_reported_not_raised(labelled):
    def broken(train, labels_key, seed):
        raise RuntimeError("boom")

    results = run_benchmark(
        labelled,
        "cell_type",
        methods=[Method("broken", broken, None)],
        tasks=["within"],
        seeds=[0],
        progress=False,
    )
    assert results.loc[0, "error"] == "RuntimeError: boom"
    assert np.isnan(results.loc[0, "macro_f1"])
    assert "failed" in results_table(results)


def test_method_registry_and_errors(labelled):
    assert {
        "scanpy",
        "sctop",
        "scvi",
        "cellencoder",
        "cellrep_log_logreg",
        "cellrep_pearson_local_logreg",
    } <= set(METHODS)
    assert not METHODS["scvi"].default
    # issue 10: the default set is the comparison a user needs; the variants run with 'all'
    assert DEFAULT_METHODS == ("cellrep_default", "souza_mehta", "scanpy", "sctop", "celltypist", "singler")
    assert not METHODS["cellrep_log_logreg"].default
    assert METHODS["souza_mehta"].options == {
        **METHODS["cellrep_rank_probit_logreg"].options,
    }
    everything = [method.name for method in resolve_methods(["all", "scanpy"])]
    assert "cellrep_log_logreg" in everything
    assert "celltypist_majority" in everything
    assert everything.count("scanpy") == 1
    assert not {"scvi", "scanvi", "cellencoder"} & set(everything)  # slow learned models: on request
    assert set(TASKS) == {"within", "leave_one_batch_out", "cross_dataset", "cross_species", "novel_type"}
    assert cellrep_method("pearson", "knn").options["whiten"] is False
    with pytest.raises(ValueError, match="Unknown method"):
        run_benchmark(labelled, "cell_type", methods=["nope"], tasks=["within"], progress=False)
    with pytest.raises(ValueError, match="None of the tasks"):
        run_benchmark(labelled, "cell_type", methods=FAST_METHODS, tasks=["cross_dataset"], progress=False)
    # the message says why each task gives no split (a 90-cell file is too small for novel_type)
    single_batch = labelled.copy()
    single_batch.obs["batch"] = "only"
    with pytest.raises(ValueError, match="None of the tasks") as error:
        run_benchmark(
            single_batch,
            "cell_type",
            methods=FAST_METHODS,
            tasks=["novel_type", "leave_one_batch_out", "cross_species"],
            progress=False,
        )
    assert str(error.value) == (
        "None of the tasks ['novel_type', 'leave_one_batch_out', 'cross_species'] applies to these inputs: "
        "novel_type needs at least 3 types and one with 10 or more cells in the 20% test part; these data "
        "have 3 types with at most 6 test cells (90 cells in all); leave_one_batch_out needs at least 2 "
        "batches in obs['batch']; cross_species needs a query."
    )


def test_cross_species_benchmark_runs(human_mouse):
    human, mouse = human_mouse
    results = run_benchmark(
        human,
        "cell_type",
        methods=["cellrep_log_logreg", "scanpy"],
        tasks=["cross_species"],
        query=mouse,
        query_name="mouse",
        orthologs="mouse_ortholog",
        dataset="human",
        progress=False,
    )
    assert results["task"].unique().tolist() == ["cross_species"]
    assert (results["error"] == "").all()
    assert (results["macro_f1"] > 0.8).all()


@pytest.mark.slow  # the sctop package compiles its numba kernels (no cache) in every process
def test_sctop_package_peer(labelled):
    results = run_benchmark(
        labelled, "cell_type", methods=["sctop"], tasks=["within"], seeds=[0], progress=False
    )
    assert results.loc[0, "error"] == ""
    assert results.loc[0, "macro_f1"] > 0.9


def test_cellrep_sctop_method_predicts_as_the_sctop_package(labelled):
    (split,) = make_splits(labelled, "cell_type", tasks=["within"], seeds=[1])
    predictions = {}
    for name in ("sctop", "cellrep_sctop"):
        method = METHODS[name]
        fitted = method.fit(split.train.copy(), "cell_type", 1)
        predictions[name] = method.predict(fitted, split.test.copy())
    np.testing.assert_array_equal(predictions["cellrep_sctop"][0], predictions["sctop"][0])
    np.testing.assert_allclose(predictions["cellrep_sctop"][1], predictions["sctop"][1], rtol=1e-4)


@pytest.mark.shared_data
def test_zheng68k_within_split_beats_chance():
    adata = read_shared("zheng68k_reduced")
    results = run_benchmark(
        adata,
        "cell_type",
        methods=["cellrep_log_logreg", "scanpy"],
        tasks=["within"],
        seeds=[0],
        progress=False,
    )
    assert (results["error"] == "").all()
    assert (results["macro_f1"] > 0.5).all()


def test_novel_type_splits_hold_each_type_out_of_the_reference():
    adata = labelled_counts(150)
    splits = make_splits(adata, "cell_type", tasks=["novel_type"], seeds=[0])
    assert [split.split for split in splits] == ["novel:type0", "novel:type1", "novel:type2"]
    for split in splits:
        held_out = split.split.removeprefix("novel:")
        assert held_out not in set(split.train.obs["cell_type"])
        np.testing.assert_array_equal(split.novel, split.truth == held_out)
        assert split.novel.sum() == 10
        assert split.test.n_obs == 30
    assert splits[0].test.obs_names.equals(splits[1].test.obs_names)  # one test part for every type


def test_novel_type_scores_match_hand_computed_values():
    from sklearn.metrics import roc_auc_score

    truth = np.array(["a", "a", "b", "b", "new", "new"])
    predicted = np.array(["a", "b", "b", "b", "a", "b"])
    confidence = np.array([0.9, 0.4, 0.8, 0.7, 0.3, 0.6])
    novel = truth == "new"
    scores = novel_type_scores(truth, predicted, confidence, novel, threshold=0.5)
    assert scores["novel_auroc"] == pytest.approx(roc_auc_score(novel, -confidence))
    assert scores["novel_auroc"] == pytest.approx(7 / 8)  # 7 of 8 (novel, known) pairs ordered right
    assert scores["known_macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)  # a: P=1 R=.5; b: P=2/3 R=1
    assert scores["novel_unknown_fraction"] == 0.5
    assert scores["known_unknown_fraction"] == 0.25
    no_call = novel_type_scores(truth, predicted, None, novel, threshold=None)
    assert np.isnan(no_call["novel_auroc"])
    assert np.isnan(no_call["novel_unknown_fraction"])


def test_novel_type_task_reports_auroc_for_cellrep_and_peers():
    adata = labelled_counts(150)
    results = run_benchmark(
        adata,
        "cell_type",
        methods=["cellrep_default", "celltypist", "singler"],
        tasks=["novel_type"],
        seeds=[0],
        progress=False,
    )
    assert (results["error"] == "").all(), results["error"].unique()
    assert results["novel_auroc"].notna().all()
    assert (results["known_macro_f1"] > 0.9).all()
    np.testing.assert_array_equal(results["macro_f1"], results["known_macro_f1"])
    by_method = results.groupby("method")
    assert by_method["novel_unknown_fraction"].mean().notna().to_dict() == {
        "cellrep_default": True,
        "celltypist": True,
        "singler": False,  # SingleR makes no unknown call here
    }


@pytest.mark.parametrize("method", ["celltypist", "singler"])
def test_peers_train_from_the_reference(labelled, method):
    results = run_benchmark(
        labelled, "cell_type", methods=[method], tasks=["within"], seeds=[0], progress=False
    )
    assert results.loc[0, "error"] == ""
    assert results.loc[0, "macro_f1"] > 0.9
    assert results.loc[0, "fit_seconds"] >= 0
    assert results.loc[0, "peak_memory_mb"] > 0


@pytest.mark.parametrize("n_test", [30, 150])
def test_cellrep_default_scores_novelty_as_transfer_labels_does(n_test):
    """The harness's cellrep_default gives transfer_labels' certainty, also under 100 test cells (split conformal)."""
    import cellrep as cr

    adata = labelled_counts(150 + n_test, seed=0)  # the test cells are new draws of the same types
    train, test = adata[:150].copy(), adata[150:].copy()
    truth = test.obs.pop("cell_type").astype(str).to_numpy()
    method = METHODS["cellrep_default"]
    predicted, confidence = method.predict(method.fit(train.copy(), "cell_type", 0), test.copy())
    cr.tl.transfer_labels(train, test, labels_key="cell_type")
    classes = test.uns["cell_type_transfer"]["classes"]
    np.testing.assert_array_equal(predicted, classes[test.obsm["cell_type_proba"].argmax(axis=1)])
    np.testing.assert_allclose(confidence, test.obs["cell_type_certainty"], rtol=1e-5)
    assert (predicted == truth).mean() > 0.95
    # cells drawn like the reference: p-values near uniform (medians 0.66 with 30 cells, 0.50 with 150)
    assert 0.3 < np.median(test.obs["cell_type_reference_pvalue"]) < 0.7
