"""Sites: where within a source an image was made or published.

A source such as ieee8023 or COVID-CXNet gathers images from many places:
Radiopaedia and Eurorad case pages, the Italian radiology society (SIRM), a
Twitter account, one hospital's repository, and figures cut from dozens of
journal papers. Each place has its own scanners, image processing and
annotations (arrows, labels, crops), so a classifier can learn the place instead
of the disease. :func:`site_from_url` maps a record's source URL to a short,
stable key for that place, so that metrics can be broken down by site and a
site can be held out (:func:`cxrclassify.crossval.leave_one_source_out` with
``by="site"``).

Keys:

- a named site: ``"radiopaedia"``, ``"eurorad"``, ``"sirm"``,
  ``"twitter-chestimaging"`` (other accounts: ``"twitter-<account>"``),
  ``"hannover"`` (Hannover Medical School's ``ml-workgroup`` repository and its
  figshare DOI 10.6084/m9.figshare.12275009);
- ``"journal:<name>"`` for a figure from a journal article or preprint: the
  host without ``www.`` (``"journal:nejm.org"``), or for a ``doi.org`` link the
  DOI's publisher prefix, named after the publisher's host where the prefix is
  well known (``10.1056`` -> ``"journal:nejm.org"``, the same key as the
  publisher's own links) and ``"journal:doi-<prefix>"`` otherwise; a few
  hosts are keyed as another name of the same site (BioMed Central's journal
  sub-domains as ``biomedcentral.com``, PubMed as ``ncbi.nlm.nih.gov``, RSNA's
  case collection as ``pubs.rsna.org``);
- ``"github:<owner>/<repository>"`` for another GitHub repository;
- ``"web:<host>"`` for any other web page;
- ``None`` when nothing is known.

This module imports only the standard library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

__all__ = ["ieee8023_site", "site_from_url"]

#: Hosts (without ``www.``) of named sites.
_NAMED_HOSTS = {
    "radiopaedia.org": "radiopaedia",
    "eurorad.org": "eurorad",
    "sirm.org": "sirm",
}
_HANNOVER_REPOSITORY = "ml-workgroup/covid-19-image-repository"
_HANNOVER_DOI = "10.6084/m9.figshare.12275009"
#: DOI publisher prefixes named after the publisher's host, so that a doi.org
#: link and the publisher's own link get the same key.
_DOI_PUBLISHERS = {
    "10.1016": "sciencedirect.com",  # Elsevier (also The Lancet, Clinical Radiology, ...)
    "10.1148": "pubs.rsna.org",  # Radiological Society of North America
    "10.1056": "nejm.org",  # New England Journal of Medicine
    "10.1007": "link.springer.com",  # Springer
    "10.1186": "biomedcentral.com",  # BioMed Central (Springer Nature)
    "10.1038": "nature.com",  # Nature
    "10.1111": "onlinelibrary.wiley.com",  # Wiley
    "10.1002": "onlinelibrary.wiley.com",  # Wiley
    "10.1093": "academic.oup.com",  # Oxford University Press
    "10.3348": "kjronline.org",  # Korean Journal of Radiology
    "10.3904": "kjim.org",  # Korean Journal of Internal Medicine
    "10.4269": "ajtmh.org",  # American Journal of Tropical Medicine and Hygiene
    "10.7759": "cureus.com",  # Cureus
    "10.2214": "ajronline.org",  # American Journal of Roentgenology
    "10.1164": "atsjournals.org",  # American Thoracic Society
    "10.1183": "erj.ersjournals.com",  # European Respiratory Society
    "10.1055": "thieme-connect.com",  # Thieme
    "10.1080": "tandfonline.com",  # Taylor & Francis
    "10.3390": "mdpi.com",  # MDPI
    "10.1542": "publications.aap.org",  # American Academy of Pediatrics
    "10.1159": "karger.com",  # Karger
    "10.1136": "bmj.com",  # BMJ
    "10.1097": "journals.lww.com",  # Wolters Kluwer
    "10.1101": "medrxiv.org",  # Cold Spring Harbor Laboratory (medRxiv, bioRxiv)
    "10.21203": "researchsquare.com",  # Research Square preprints
    "10.2139": "ssrn.com",  # SSRN preprints
    "10.4236": "scirp.org",  # Scientific Research Publishing
    "10.6084": "figshare.com",  # figshare
    "10.20862": "russianradiology.ru",  # Vestnik Rentgenologii i Radiologii
    "10.17843": "rpmesp.ins.gob.pe",  # Revista Peruana de Medicina Experimental y Salud Publica
    "10.5812": "brieflands.com",  # Brieflands
    "10.26444": "jpccr.eu",  # Journal of Pre-Clinical and Clinical Research
}
#: Hosts (without ``www.``) of journals, publishers and preprint servers.
_JOURNAL_HOSTS = frozenset(set(_DOI_PUBLISHERS.values()) | {
    "thelancet.com", "clinicalradiologyonline.net", "heartrhythmcasereports.com", "journal.chestnet.org",
    "ncbi.nlm.nih.gov", "pubmed.ncbi.nlm.nih.gov", "europepmc.org", "ajtmh.org", "thno.org",
    "he01.tci-thaijo.org", "pjms.org.pk", "indianpediatrics.net", "annalskemu.org", "ijhsr.org",
    "jamanetwork.com", "journals.plos.org", "frontiersin.org", "hindawi.com", "sagepub.com",
    "journals.sagepub.com", "cell.com", "science.org", "arxiv.org",
})
#: Hosts keyed as another: other names of the same site, so that one site gets one key
#: (a BioMed Central journal's sub-domain and a 10.1186 DOI both give ``journal:biomedcentral.com``).
_HOST_ALIASES = {"mobile.twitter.com": "twitter.com", "x.com": "twitter.com", "m.radiopaedia.org": "radiopaedia.org",
                 "pmc.ncbi.nlm.nih.gov": "ncbi.nlm.nih.gov", "pubmed.ncbi.nlm.nih.gov": "ncbi.nlm.nih.gov",
                 "cases.rsna.org": "pubs.rsna.org"}
_DOI_IN_TEXT = re.compile(r"(10\.\d{4,9})/\S+")
_LOCATION_SITES = (("hannover medical school", "hannover"),)


def _host(url: str) -> tuple[str, str]:
    """The lower-case host without ``www.`` and port, and the path, of ``url``."""
    text = url.strip()
    if "://" not in text:
        text = "//" + text
    parts = urlsplit(text)
    host = (parts.hostname or "").lower().rstrip(".")
    host = host.removeprefix("www.")
    if host.endswith(".biomedcentral.com"):
        host = "biomedcentral.com"
    return _HOST_ALIASES.get(host, host), unquote(parts.path or "")


def _doi_site(doi: str) -> str | None:
    """The site key of a DOI (``10.xxxx/...``), or ``None`` when it is not one."""
    text = unquote(doi.strip())
    if text.lower().startswith(_HANNOVER_DOI):
        return "hannover"
    match = _DOI_IN_TEXT.search(text)
    if match is None:
        return None
    prefix = match.group(1)
    return f"journal:{_DOI_PUBLISHERS.get(prefix, 'doi-' + prefix)}"


def _journal_host(host: str, path: str) -> bool:
    if host in _JOURNAL_HOSTS or any(host.endswith("." + known) for known in _JOURNAL_HOSTS):
        return True
    if "journal" in host:
        return True
    lowered = path.lower()
    return "/doi/" in lowered or lowered.startswith("/article")


def _location_site(location: str | None) -> str | None:
    text = (location or "").strip().lower()
    for needle, site in _LOCATION_SITES:
        if needle in text:
            return site
    return None


def site_from_url(url: str | None, *, location: str | None = None) -> str | None:
    """A short, stable key for the site an image's source URL points to.

    Parameters
    ----------
    url : str or None
        The page the image was taken from (a case page, an article, a tweet, a
        repository). Blank or ``None`` when unknown.
    location : str or None, optional
        Free-text location of the record (``"Hannover Medical School, Hannover,
        Germany"``). Used only when the URL names no site: a location that is a
        known site (Hannover Medical School) gives that site; a country or city
        alone gives none.

    Returns
    -------
    str or None
        ``"radiopaedia"``, ``"eurorad"``, ``"sirm"``, ``"twitter-chestimaging"``
        (``"twitter-<account>"`` for other accounts), ``"hannover"``,
        ``"journal:<name>"`` for a journal article or preprint (the host without
        ``www.``, or for a ``doi.org`` link the DOI prefix's publisher host where
        known, else ``"doi-<prefix>"``), ``"github:<owner>/<repository>"``,
        ``"web:<host>"`` for any other page; ``None`` when neither argument says
        anything.

    Examples
    --------
    >>> from cxrclassify.datasets.sites import site_from_url
    >>> site_from_url("https://radiopaedia.org/cases/covid-19-pneumonia-12")
    'radiopaedia'
    >>> site_from_url("https://twitter.com/ChestImaging/status/1243928581983670272")
    'twitter-chestimaging'
    >>> site_from_url("https://www.nejm.org/doi/full/10.1056/NEJMoa2001191")
    'journal:nejm.org'
    >>> site_from_url("https://doi.org/10.1056/NEJMoa2001191")
    'journal:nejm.org'
    >>> site_from_url("https://dx.doi.org/10.1002%2Fjmv.26255")
    'journal:onlinelibrary.wiley.com'
    >>> site_from_url("https://doi.org/10.99999/unknown-publisher.1")
    'journal:doi-10.99999'
    >>> site_from_url("https://github.com/ml-workgroup/covid-19-image-repository/tree/master/png")
    'hannover'
    >>> site_from_url("https://radiologyassistant.nl/chest/covid-19")
    'web:radiologyassistant.nl'
    >>> site_from_url("", location="Hannover Medical School, Hannover, Germany")
    'hannover'
    >>> site_from_url(None, location="Italy") is None
    True
    """
    text = (url or "").strip()
    if not text:
        return _location_site(location)
    host, path = _host(text)
    if not host:
        return _location_site(location)
    if host in _NAMED_HOSTS:
        return _NAMED_HOSTS[host]
    segments = [segment for segment in path.split("/") if segment]
    if host == "twitter.com":
        return f"twitter-{segments[0].lower()}" if segments else "web:twitter.com"
    if host == "github.com" or host == "raw.githubusercontent.com":
        repository = "/".join(segments[:2]).lower()
        if repository == _HANNOVER_REPOSITORY:
            return "hannover"
        return f"github:{repository}" if len(segments) >= 2 else f"web:{host}"
    if host in ("doi.org", "dx.doi.org") or host.startswith(("doi-org.", "doi.")):
        return _doi_site(path.lstrip("/")) or f"web:{host}"
    if _HANNOVER_DOI.rsplit(".", 1)[-1] in path and "figshare" in host:
        return "hannover"
    if _journal_host(host, path):
        return f"journal:{host}"
    return _location_site(location) or f"web:{host}"


def ieee8023_site(row: Mapping[str, str]) -> str | None:
    """The site of an ieee8023 metadata row, from its ``url``, ``doi`` and ``location``.

    The URL decides where it names a site. A row whose URL is blank, or names
    only a generic web page, but which has a DOI is a published figure: its site
    is the DOI's (``"journal:<publisher>"``, or ``"hannover"`` for the Hannover
    figshare DOI). A known location (Hannover Medical School) is used last.

    Parameters
    ----------
    row : mapping of str to str
        One row of the collection's ``metadata.csv`` (missing keys are blank).

    Returns
    -------
    str or None
        A site key as :func:`site_from_url` gives it; ``None`` when the row says
        nothing about where it came from.

    Examples
    --------
    >>> from cxrclassify.datasets.sites import ieee8023_site
    >>> ieee8023_site({"url": "https://www.sirm.org/2020/03/10/covid-19-caso-12/", "location": "Italy"})
    'sirm'
    >>> ieee8023_site({"url": "", "doi": "10.1148/radiol.2020200490"})
    'journal:pubs.rsna.org'
    >>> ieee8023_site({"url": "https://github.com/ml-workgroup/covid-19-image-repository",
    ...                "doi": "10.6084/m9.figshare.12275009"})
    'hannover'
    >>> ieee8023_site({}) is None
    True
    """
    url = (row.get("url") or "").strip()
    doi = (row.get("doi") or "").strip()
    location = (row.get("location") or "").strip() or None
    if doi and _doi_site(doi) == "hannover":
        return "hannover"
    site = site_from_url(url, location=location) if url else None
    if (site is None or site.startswith("web:")) and doi:
        site = _doi_site(doi) or site
    if site is None:
        site = _location_site(location)
    return site
