"""Support's distance evidence (Mahalanobis to the FAQs' paraphrase clouds) and the contrastive bi-encoder
alternative (in-batch + hard negatives, paraphrases held out of tuning to calibrate on).

Unit tests of the pieces on synthetic vectors, and one module-scoped build of the English demo KB with
``distance_score: mahalanobis`` (real MiniLM, frozen: seconds on 2 cores).
"""
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lepton_apps.support.distance import DistanceScorer, attach  # noqa: E402
from lepton_apps.support.index import Hit  # noqa: E402
from lepton_apps.support.finetune import _mnrl_loss, mine_hard_negatives  # noqa: E402
from lepton_apps.support.model import DISTANCE_FEATURES, retrieval_features  # noqa: E402
from lepton_apps.support.training import finetune_holdout  # noqa: E402


def _clusters(seed=0, n=40, d=8):
    """Two FAQs whose paraphrases spread far along axis 0 and hardly at all along axis 1."""
    rng = np.random.default_rng(seed)
    spread = np.ones(d) * 0.05
    spread[0] = 1.0
    means = np.zeros((2, d))
    means[1, 2] = 3.0
    x = np.concatenate([means[r] + rng.normal(size=(n, d)) * spread for r in (0, 1)])
    return x, np.repeat([0, 1], n), means


def test_mahalanobis_follows_the_spread_of_the_paraphrases_not_the_euclidean_distance():
    x, rows, means = _clusters()
    scorer = DistanceScorer.fit(x, rows, 2)
    along = means[0].copy()
    along[0] += 1.0            # one unit where FAQ 0's paraphrases vary a lot: still typical
    across = means[0].copy()
    across[1] += 1.0           # one unit where they hardly vary: far off the cloud
    d = scorer.distances(np.stack([along, across, means[1]]))
    assert d.shape == (3, 2)
    assert d[1, 0] > 20 * d[0, 0]              # same Euclidean distance, very different Mahalanobis
    assert d[2].argmin() == 1 and d[0].argmin() == 0
    assert 0.0 <= scorer.shrinkage <= 1.0


def test_a_question_far_from_every_faq_has_the_largest_nearest_distance():
    x, rows, _ = _clusters(seed=1)
    scorer = DistanceScorer.fit(x, rows, 2)
    inside = scorer.distances(x[:5]).min(1)
    outlier = np.zeros(x.shape[1])
    outlier[3] = 2.0
    assert scorer.distances(outlier).min() > 10 * inside.max()


def test_a_faq_without_texts_in_a_fold_and_single_text_faqs_stay_finite():
    x, rows, _ = _clusters(seed=2)
    rows = rows.copy()
    rows[0] = 2                                   # FAQ 2 has one text: no spread of its own
    scorer = DistanceScorer.fit(x, rows, 4)       # FAQ 3 has none (a calibration fold can leave one empty)
    d = scorer.distances(x[:3])
    assert np.isfinite(d).all() and d.shape == (3, 4)
    assert d[0, 2] == pytest.approx(0.0, abs=1e-4)


def test_state_round_trip_gives_identical_distances():
    x, rows, _ = _clusters(seed=3)
    scorer = DistanceScorer.fit(x, rows, 2)
    state = {k: torch.from_numpy(v) for k, v in scorer.state().items()}
    again = DistanceScorer.from_state(state)
    assert np.array_equal(again.distances(x[:7]), scorer.distances(x[:7]))
    assert again.shrinkage == pytest.approx(scorer.shrinkage)


def test_distance_features_read_the_top_hit_and_the_nearest_other_candidate():
    hits = [Hit(3, 0.9, 0.9, 0.0, 0.0, 0), Hit(5, 0.8, 0.8, 0.0, 0.0, 1)]
    attach(hits, np.array([0, 0, 0, 2.5, 0, 1.0]))
    assert [h.distance for h in hits] == [2.5, 1.0]
    top, gap = retrieval_features(hits, DISTANCE_FEATURES)
    assert top == 2.5 and gap == pytest.approx(1.5)
    attach(hits, np.array([0, 0, 0, 0.5, 0, 1.0]))
    assert retrieval_features(hits, DISTANCE_FEATURES)[1] == 0.0     # the top FAQ is the nearest: no gap


def test_hard_negatives_are_the_nearest_text_of_another_faq():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 6)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    owner = np.repeat(np.arange(10), 5)
    near = mine_hard_negatives(emb, owner, chunk=7)
    sims = emb @ emb.T
    for i in range(len(emb)):
        other = np.flatnonzero(owner != owner[i])
        assert near[i] == other[sims[i, other].argmax()]
    assert (mine_hard_negatives(emb[:5], np.zeros(5)) == -1).all()    # one FAQ: nothing to contrast


def test_in_batch_loss_with_hard_negatives_masks_same_faq_columns():
    scores = torch.zeros(3, 6)
    scores[0, 0] = scores[1, 1] = scores[2, 2] = 10.0
    owners = torch.tensor([[0, 1], [1, 2], [2, 0]])
    easy = _mnrl_loss(scores, owners)
    hard = scores.clone()
    hard[0, 3] = 9.9                               # pair 0's hard negative (FAQ 1) nearly as close as its positive
    assert _mnrl_loss(hard, owners) > easy
    same = scores.clone()
    same[0, 5] = 9.9                               # column 5 is pair 2's negative, of FAQ 0 = pair 0's own FAQ
    assert _mnrl_loss(same, owners) == pytest.approx(float(easy))   # not a negative for pair 0: masked
    # without hard negatives the loss is the symmetric in-batch one, as before
    plain = torch.eye(3) * 10.0
    assert float(_mnrl_loss(plain, torch.tensor([0, 1, 2]))) < 1e-3


def test_finetune_holdout_keeps_each_faq_question_and_enough_to_tune_on():
    owner = np.repeat(np.arange(6), [1, 2, 3, 5, 10, 20])
    held = finetune_holdout(owner, 0.3, seed=0)
    starts = np.searchsorted(owner, np.arange(6))
    assert not held[starts].any()                  # never an FAQ's own question
    for row, n in enumerate([1, 2, 3, 5, 10, 20]):
        part = held[owner == row]
        assert (n - part.sum()) >= 2 or n < 3      # at least two texts left to make a tuning pair
        assert part.sum() == (0 if n < 3 else min(n - 2, max(1, round(0.3 * n))))
    assert (finetune_holdout(owner, 0.3, seed=0) == held).all()


@pytest.fixture(scope="module")
def distance_build(tmp_path_factory):
    from lepton_apps.support.demo import demo_config
    from lepton_apps.support.training import build, write_bundle

    work = tmp_path_factory.mktemp("support-distance")
    cfg = demo_config(work, "en")         # the defaults: the distance, and the tuned encoder (auto on MiniLM)
    assistant, record = build(cfg)
    return assistant, record, write_bundle(assistant, record, cfg.out)


def test_demo_build_uses_the_distance_in_its_confidence_and_explains_it(distance_build):
    assistant, record, _ = distance_build
    assert set(DISTANCE_FEATURES) <= set(assistant.confidence.features)
    assert record["distance"]["n_train"] > len(assistant.kb)
    assert record["config"].finetune_encoder == "auto" and "finetune" in record   # the default tunes MiniLM
    ex = assistant.explain("How do I open an account?")
    assert ex.confidence_features["maha_top1"] > 0
    assert "Mahalanobis" in ex.fusion
    far = assistant.explain("What is the boiling point of tungsten?")
    assert far.confidence_features["maha_top1"] > ex.confidence_features["maha_top1"]


def test_distance_bundle_round_trip_answers_identically(distance_build):
    from lepton_apps.support.predict import SupportAssistant

    assistant, _, path = distance_build
    loaded = SupportAssistant.load(path, backend="torch")
    assert loaded.distance is not None
    questions = ["How do I open an account?", "my card was stolen", "Who won the football match yesterday?"]
    for a, b in zip(assistant.answer_batch(questions), loaded.answer_batch(questions)):
        assert (a.faq_id, a.handoff) == (b.faq_id, b.handoff)
        assert a.confidence == pytest.approx(b.confidence, abs=1e-4)


def test_unquoted_yaml_switches_read_as_the_switch_words():
    import yaml

    from lepton_apps.support.config import SupportConfig

    cfg = SupportConfig(**yaml.safe_load("kb: kb.csv\nreranker: on\ndistance_score: off\nfaq_classifier: off\n"))
    assert (cfg.reranker, cfg.distance_score, cfg.faq_classifier) == ("on", "off", "off")
    assert SupportConfig(kb="kb.csv", distance_score=True).distance_score == "mahalanobis"
    assert SupportConfig(kb="kb.csv").distance_score == "mahalanobis"      # the default
