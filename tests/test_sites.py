"""Sites: keys from source URLs, the sites of the real collections, and a site shortcut held out."""

from __future__ import annotations

import collections
import csv
import logging
import warnings

import numpy as np
import pytest

from cxrclassify import build_model, evaluate, train
from cxrclassify.crossval import leave_one_source_out, subset
from cxrclassify.datasets import ImageSet, Sample
from cxrclassify.datasets.ieee8023 import (
    FRONTAL_VIEWS,
    ieee8023_records,
    read_ieee8023_metadata,
)
from cxrclassify.datasets.kermany import kermany_index, kermany_records
from cxrclassify.datasets.nih import nih_records
from cxrclassify.datasets.sites import ieee8023_site, site_from_url
from cxrclassify.exceptions import ArgumentError, DataError

CLASSES = ["disease", "healthy"]


@pytest.mark.parametrize(("url", "site"), [
    ("https://radiopaedia.org/cases/covid-19-pneumonia-7?lang=us", "radiopaedia"),
    ("https://www.eurorad.org/case/16664", "eurorad"),
    ("https://www.sirm.org/2020/03/13/covid-19-caso-27/", "sirm"),
    ("https://twitter.com/ChestImaging/status/1243928581983670272", "twitter-chestimaging"),
    ("https://mobile.twitter.com/SomeRadiologist/status/1", "twitter-someradiologist"),
    ("https://github.com/ml-workgroup/covid-19-image-repository/tree/master/png", "hannover"),
    ("https://figshare.com/articles/dataset/12275009", "hannover"),
    ("https://doi.org/10.6084/m9.figshare.12275009", "hannover"),
    ("https://github.com/someone/xrays", "github:someone/xrays"),
    ("https://www.nejm.org/doi/full/10.1056/NEJMoa2001191", "journal:nejm.org"),
    ("https://doi.org/10.1056/NEJMoa2001191", "journal:nejm.org"),
    ("https://www.sciencedirect.com/science/article/pii/S2214250920300834", "journal:sciencedirect.com"),
    ("https://doi.org/10.1016/j.idcr.2020.e00834", "journal:sciencedirect.com"),
    ("https://dx.doi.org/10.1016%2FS1473-3099(20)30468-0", "journal:sciencedirect.com"),
    ("https://doi-org.cyber.usask.ca/10.4269/ajtmh.20-0736", "journal:ajtmh.org"),
    ("https://pubs.rsna.org/doi/10.1148/radiol.2020200432", "journal:pubs.rsna.org"),
    ("https://cases.rsna.org/case/d363ee26-83a6-4517-a363", "journal:pubs.rsna.org"),
    ("https://tropmedhealth.biomedcentral.com/articles/10.1186/s41182-020-00203-5", "journal:biomedcentral.com"),
    ("https://www.ncbi.nlm.nih.gov/pmc/articles/PMC7128174/", "journal:ncbi.nlm.nih.gov"),
    ("https://pubmed.ncbi.nlm.nih.gov/32240128/", "journal:ncbi.nlm.nih.gov"),
    ("https://www.atsjournals.org/doi/pdf/10.1164/ajrccm-conference.2021.203", "journal:atsjournals.org"),
    ("https://he01.tci-thaijo.org/index.php/example/article/view/1", "journal:he01.tci-thaijo.org"),
    ("https://doi.org/10.99999/unknown.1", "journal:doi-10.99999"),
    ("https://radiologyassistant.nl/chest/covid-19/covid19-imaging-findings", "web:radiologyassistant.nl"),
    ("http://www.yxppt.com/html/20200219085511.html", "web:yxppt.com"),
    ("radiopaedia.org/cases/no-scheme", "radiopaedia"),
])
def test_site_from_url_on_real_url_shapes(url, site):
    assert site_from_url(url) == site


def test_nothing_known_is_none_and_a_known_location_is_used():
    assert site_from_url(None) is None and site_from_url("  ") is None
    assert site_from_url("", location="Italy") is None
    assert site_from_url(None, location="Hannover Medical School, Hannover, Germany") == "hannover"
    assert site_from_url("https://radiopaedia.org/cases/1", location="Hannover Medical School") == "radiopaedia"


def test_ieee8023_site_uses_the_doi_where_the_url_says_little():
    assert ieee8023_site({"url": "", "doi": "10.1148/radiol.2020200490"}) == "journal:pubs.rsna.org"
    assert ieee8023_site({"url": "http://www.yxppt.com/html/1.html", "doi": "10.1016/S2213-2600(20)30076-X"}) \
        == "journal:sciencedirect.com"
    assert ieee8023_site({"url": "https://www.eurorad.org/case/1", "doi": "10.1016/x"}) == "eurorad"
    assert ieee8023_site({"url": "https://example.org/x", "doi": "10.6084/m9.figshare.12275009"}) == "hannover"
    assert ieee8023_site({"location": "Hannover Medical School, Hannover, Germany"}) == "hannover"
    assert ieee8023_site({"url": "", "doi": "", "location": "Spain"}) is None


def _ieee8023_frontal(shared_data):
    rows = read_ieee8023_metadata(shared_data / "ieee8023-covid-chestxray" / "metadata.csv")
    return [row for row in rows if row["view"] in FRONTAL_VIEWS and row["modality"] == "X-ray"]


def test_every_real_ieee8023_frontal_xray_gets_a_plausible_site(shared_data):
    frontal = _ieee8023_frontal(shared_data)
    sites = [ieee8023_site(row) for row in frontal]
    covid = [site for site, row in zip(sites, frontal) if row["finding"].startswith("COVID-19")]
    assert len(frontal) == 426 and len(covid) == 337 and None not in sites
    hannover = [site for site, row in zip(sites, frontal) if "Hannover" in row["location"]
                or "ml-workgroup" in row["url"]]
    assert len(hannover) == 70 and set(hannover) == {"hannover"}
    counts = collections.Counter(sites)
    for named in ("radiopaedia", "eurorad", "sirm"):
        assert counts[named] >= 40, counts
    assert counts["journal:nejm.org"] >= 10 and counts["journal:pubs.rsna.org"] >= 20
    # Every key is one of the documented kinds, and the long tail of journals stays a tail.
    assert all(site in {"radiopaedia", "eurorad", "sirm", "hannover"} or site.startswith(("journal:", "web:"))
               for site in counts)
    assert not any(site.startswith(("web:doi", "journal:doi-")) for site in counts)
    assert 20 <= len(counts) <= 40 and sum(n for site, n in counts.items() if site.startswith("journal:")) < 200


def test_real_covid_cxnet_sites_match_the_documented_sources(shared_data):
    with open(shared_data / "covid-cxnet" / "metadata.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    counts = collections.Counter(site_from_url(row["url"], location=row["location"]) for row in rows)
    # data/README.md: @ChestImaging 110, journal and other web figures 184, Radiopaedia 32, Eurorad 16, SIRM 10.
    assert (counts["twitter-chestimaging"], counts["radiopaedia"], counts["eurorad"], counts["sirm"]) == (110, 32, 16, 10)
    others = sum(n for site, n in counts.items() if site.startswith(("journal:", "web:")))
    assert others == 184 and None not in counts and not any(site.startswith("web:doi") for site in counts)


def test_records_of_the_real_collections_carry_their_site(shared_data, tmp_path):
    home = tmp_path / "home"
    rows = [row for row in _ieee8023_frontal(shared_data) if row["finding"] == "COVID-19"]
    picked = [next(row for row in rows if "Hannover" in row["location"]),
              next(row for row in rows if "radiopaedia" in row["url"])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # verify=False on a downscaled mirror
        records = ieee8023_records(rows=picked, mirror=shared_data, data_home=home, verify=False, progress=False)
        nih = nih_records(mirror=shared_data, n_per_label=1, data_home=home, verify=False, progress=False)
    assert [record.site for record in records] == ["hannover", "radiopaedia"]
    assert {record.site for record in nih} == {"nih-cc"} and len(nih) == 2
    archive = shared_data / "kermany-pediatric-cxr" / "ChestXRay2017.zip"
    kermany = kermany_records(kermany_index(archive)[:2], path=archive, data_home=home, progress=False)
    assert {record.site for record in kermany} == {"guangzhou-wcmc"}


def _site_images(plan, seed=0):
    """``plan``: (site, label, n, marker) rows, all from one source; patients are pairs of images."""
    rng = np.random.default_rng(seed)
    images, labels, records = [], [], []
    for site, label, count, marker in plan:
        for index in range(count):
            image = rng.integers(0, 60, (16, 16, 3)).astype(np.uint8)
            if marker == "stripe":  # the evidence every site but the shortcut one shares
                image[:, :4] = 250
            elif marker == "corner":  # a small red tag only site "tagged" puts on its disease images
                image[:3, -3:] = (250, 0, 0)
            images.append(image)
            labels.append(CLASSES.index(label))
            records.append(Sample(f"{site}/{label}{index}.png", label, f"{site}-{label}-p{index // 2}", "mixed",
                                  site=site))
    return ImageSet(np.stack(images), np.array(labels), records, list(CLASSES))


_BUILD = {"weights": None, "head": "gap", "freeze_base": False}
_TRAIN = {"epochs": 40, "batch_size": 8, "learning_rate": 3e-3, "progress": False}


def test_a_site_shortcut_collapses_when_the_site_is_held_out():
    """Site "tagged" marks its disease images with a corner tag and nothing else: a model can only learn the tag.

    Trained with some of the site's patients, it classifies the site's other
    patients well; trained without the site, it has never seen the tag and
    misses the site's disease images, while a site carrying the shared evidence
    is classified well even when held out.
    """
    data = _site_images([("tagged", "disease", 24, "corner"), ("tagged", "healthy", 24, None),
                         ("plain", "disease", 16, "stripe"), ("plain", "healthy", 16, None),
                         ("other", "disease", 16, "stripe"), ("other", "healthy", 16, None),
                         (None, "disease", 8, "stripe"), (None, "healthy", 8, None)])
    # In distribution: every fourth patient of every site is tested, the rest trained on.
    is_test = np.array([int(record.group.rsplit("-p", 1)[1]) % 4 == 3 for record in data.records])
    model = build_model("tinycnn", 2, class_names=CLASSES, image_size=16, seed=0, **_BUILD)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(model, (subset(data, np.flatnonzero(~is_test)), None), seed=0, **_TRAIN)
        in_distribution = evaluate(model, subset(data, np.flatnonzero(is_test)), n_bootstrap=0).by_site
        result = leave_one_source_out(data, "tinycnn", by="site", sources=["tagged", "plain"], build_options=_BUILD,
                                      train_options=_TRAIN, n_bootstrap=0, seed=0)
    seen, held_out = in_distribution["tagged"]["accuracy"], result["tagged"].evaluation.accuracy
    logging.getLogger(__name__).info("tagged: %.3f in distribution, %.3f held out", seen, held_out)
    assert in_distribution["tagged"]["n_images"] == 12 and seen >= 0.9
    assert held_out <= 0.7 and seen - held_out >= 0.25
    assert result["tagged"].evaluation.by_site["tagged"]["recall"]["disease"] <= 0.5  # the tagged disease is missed
    assert result["plain"].evaluation.accuracy >= 0.9  # shared evidence carries over to a held-out site
    assert result.by == "site" and result.to_dict()["by"] == "site"
    assert result.summary().startswith("Leave-one-site-out: 2 folds")


def test_images_without_a_site_are_never_held_out_and_always_trained_on():
    data = _site_images([("a", "disease", 4, "stripe"), ("a", "healthy", 4, None),
                         ("b", "disease", 4, "stripe"), ("b", "healthy", 4, None),
                         (None, "disease", 4, "stripe"), (None, "healthy", 4, None)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = leave_one_source_out(data, "tinycnn", by="site", build_options=_BUILD,
                                      train_options={**_TRAIN, "epochs": 1}, validation_fraction=0, n_bootstrap=0)
    assert [fold.held_out for fold in result.folds] == ["a", "b"]
    assert [(fold.n_train, fold.n_test) for fold in result.folds] == [(16, 8), (16, 8)]
    assert "Leave-one-site-out" in result.summary()


def test_site_level_bad_inputs_are_named():
    data = _site_images([("a", "disease", 2, "stripe"), ("a", "healthy", 2, None)])
    with pytest.raises(ArgumentError, match=r"Expected by='source' or 'site'. Received: by='hospital'"):
        leave_one_source_out(data, "tinycnn", by="hospital")
    with pytest.raises(DataError, match="at least two sites"):
        leave_one_source_out(data, "tinycnn", by="site")  # one site and nothing else to train on
    with pytest.raises(DataError, match="at least two sites"):
        leave_one_source_out(_site_images([(None, "disease", 2, None), (None, "healthy", 2, None)]), "tinycnn",
                             by="site")
    with pytest.raises(DataError, match=r"Received: sources=\['z'\]"):
        leave_one_source_out(_site_images([("a", "disease", 2, None), ("b", "healthy", 2, None)]), "tinycnn",
                             by="site", sources=["z"])
