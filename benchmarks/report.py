"""The documentation's benchmark page, rendered from ``benchmarks/results/*.json``.

    python benchmarks/report.py                           # print the page (a preview)
    python benchmarks/report.py --out /tmp/benchmarks.md  # write the preview to a file
    ./dev.sh docs                                         # the site, with this page in it

``render()`` returns the whole page; the MkDocs hook ``hooks/generated_pages.py`` calls it at build
time, so the page is never copied into git (a ``docs/benchmarks.md`` file would stop the build).

Every figure on the page comes from a results file; each table names the CPU (and whether it
computes bf16 natively), the date, the software versions and the exact command of its run, and
what a file did not record is shown as "not recorded". A file without the fields a table needs
fails the render with an error that names the file.
"""

from __future__ import annotations

import argparse
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

RESULTS = Path(__file__).resolve().parent / "results"
NOT_RECORDED = "not recorded"
#: Versions every run should name; shown as "not recorded" when a file lacks them.
BASE_VERSIONS = ("python", "torch", "transformers", "bge-rag")


class ResultsError(ValueError):
    """A results file that cannot be rendered; the message starts with the file's name."""


class Section(NamedTuple):
    """One results file rendered: its kind, date, CPU, text and its lines of the summary table."""

    kind: str
    date: str
    cpu: str
    text: str
    summary: tuple[tuple[str, str], ...] = ()  # (comparison, ratio)


# --------------------------------------------------------------------------- helpers
def _require(path: Path, data: dict[str, Any], keys: Iterable[str], where: str = "") -> None:
    missing = [k for k in keys if k not in data or data[k] is None]
    if missing:
        place = f" in {where}" if where else ""
        raise ResultsError(f"{path.name}: missing required field(s) {', '.join(missing)}{place}")


def _require_rows(path: Path, data: dict[str, Any], key: str, fields: Iterable[str]) -> list[dict[str, Any]]:
    _require(path, data, [key])
    rows = data[key]
    if not isinstance(rows, list) or not rows:
        raise ResultsError(f"{path.name}: '{key}' must be a non-empty list")
    fields = list(fields)
    for i, row in enumerate(rows):
        _require(path, row, fields, where=f"{key}[{i}]")
    return rows


def _num(x: float) -> str:
    return f"{x:.0f}" if x >= 1000 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _ratio(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}x"


def _span(values: list[float]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    return _ratio(lo) if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}x"


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _kind(path: Path, data: dict[str, Any]) -> str:
    _require(path, data, ["command"])
    match = re.search(r"benchmarks/([a-z0-9_]+)\.py", data["command"])
    if not match or match.group(1) not in RENDERERS:
        known = ", ".join(f"benchmarks/{k}.py" for k in RENDERERS)
        raise ResultsError(f"{path.name}: the command {data['command']!r} names none of the scripts {known}")
    return match.group(1)


def _cpu_line(data: dict[str, Any]) -> str:
    features = data.get("cpu_features") or {}
    bf16 = features.get("native_bf16", (data.get("machine") or {}).get("native_bf16"))
    bf16_text = NOT_RECORDED if bf16 is None else ("yes" if bf16 else "no")
    detail = features.get("summary") or (", ".join(features["flags"]) if features.get("flags") else "")
    cores = data.get("cores", (data.get("machine") or {}).get("cores"))
    available = data.get("available_cpus", (data.get("machine") or {}).get("available_cpus"))
    parts = [data["cpu"]]
    if cores:
        parts.append(f"{cores} cores" + (f" ({available} available to the run)" if available else ""))
    parts.append(f"native bf16: {bf16_text}" + (f" ({detail})" if detail else ""))
    return ", ".join(parts)


def _versions_line(data: dict[str, Any], peers: Iterable[str] = ()) -> str:
    versions = dict(data.get("versions") or {})
    if not versions:
        return NOT_RECORDED
    shown = [f"{k} {versions.pop(k, NOT_RECORDED)}" for k in (*BASE_VERSIONS, *peers)]
    shown += [f"{k} {v}" for k, v in versions.items()]
    return ", ".join(shown)


def _provenance(
    path: Path, data: dict[str, Any], extra: Iterable[tuple[str, str]] = (), peers: Iterable[str] = ()
) -> str:
    """The bullet list above each table: CPU, date, versions (``peers``: packages the run compared against)."""
    items = [
        ("CPU", _cpu_line(data)),
        ("Date", str(data.get("date") or NOT_RECORDED)),
        ("Versions", _versions_line(data, peers)),
        *extra,
        ("Command", f"`{data['command'].strip()}`"),
        ("Results file", f"`{_shown_path(path)}`"),
    ]
    for key, when in (("load_average_at_start", "started"), ("load_average_at_end", "ended")):
        if data.get(key):
            load = " / ".join(f"{x:.2f}" for x in data[key])
            items.append((f"Load average when it {when}", f"{load} (1 / 5 / 15 min)"))
    if data.get("commit"):
        items.append(("Commit", f"`{data['commit']}`"))
    if data.get("provenance_note"):
        items.append(("Note", str(data["provenance_note"])))
    return "\n".join(f"- **{k}:** {v}" for k, v in items)


def _shown_path(path: Path) -> str:
    """The file's path from the repository root when it is inside the repository."""
    try:
        return path.resolve().relative_to(RESULTS.parent.parent).as_posix()
    except ValueError:
        return path.as_posix()


def _details(title: str, body: str) -> str:
    indented = "\n".join(("    " + line) if line else "" for line in body.splitlines())
    return f'??? note "{title}"\n\n{indented}'


# --------------------------------------------------------------------------- bench.py
#: Short names for the table headers (bench.py's own labels are long).
SHORT = {
    "ours": "bge_core",
    "ours-fp32": "bge_core fp32",
    "ours-one-stream": "bge_core one stream",
    "ours-m3": "bge_core",
    "ours-m3-fp32": "bge_core fp32",
    "ours-rerank": "bge_core",
    "ours-rerank-fp32": "bge_core fp32",
    "flag-default": "FlagModel defaults",
    "flag-b32": "FlagModel batch 32",
    "st": "SentenceTransformer",
    "st-openvino": "ST + OpenVINO",
    "st-onnx": "ST + ONNX",
    "fastembed-b32": "fastembed batch 32",
    "fastembed-default": "fastembed defaults",
    "flagm3-default": "BGEM3FlagModel defaults",
    "flagm3-b32": "BGEM3FlagModel batch 32",
    "flagm3-b8": "BGEM3FlagModel batch 8",
    "flagrr-default": "FlagReranker defaults",
    "flagrr-b32": "FlagReranker batch 32",
    "flagrr-b8": "FlagReranker batch 8",
    "st-crossencoder": "CrossEncoder",
}
PRECISIONS = {"ov": "OpenVINO's default"}


def _peer_package(system: str) -> str | None:
    """The package a bench.py peer comes from (ST + ONNX / OpenVINO: their own environment, listed apart)."""
    if system.startswith("flag"):
        return "FlagEmbedding"
    if system in ("st", "st-crossencoder"):
        return "sentence-transformers"
    return "fastembed" if system.startswith("fastembed") else None


BASELINE = {"dense": "ours", "m3": "ours-m3", "rerank": "ours-rerank"}
TASKS = {"dense": "dense embeddings", "m3": "BGE-M3 dense + sparse + ColBERT", "rerank": "cross-encoder reranking"}


def _is_ours(system: str) -> bool:
    return system.startswith("ours")


def accuracy_cell(row: dict[str, Any]) -> str:
    """How far a row's outputs moved from fp32: dense cosines (and top-10 changes) or reranker scores."""
    if "min_cosine" in row:
        cell = f"cos min {row['min_cosine']:.5f} / mean {row['mean_cosine']:.6f}"
        if "top10_changed" in row:
            cell += f", top-10 changed {row['top10_changed']}"
        return cell
    if "max_abs_score_diff" in row:
        return f"max abs Δscore {row['max_abs_score_diff']:.2e}"
    return ""


def _bench(path: Path, data: dict[str, Any]) -> Section:
    rows = _require_rows(path, data, "rows", ("system", "label", "task", "corpus", "precision", "throughput"))
    _require(path, data, ["cpu", "matmul_peak_gflops"])
    shapes = {"minilm": "MiniLM (6x384, real weights)", **(data.get("shapes") or {})}
    peak = data["matmul_peak_gflops"]
    peaks = f"fp32 {peak.get('fp32', 0):.0f} GFLOP/s, bf16 " + (
        f"{peak['bf16']:.0f} GFLOP/s" if peak.get("bf16") else "not native (not measured)"
    )
    rounds = max(len(r.get("runs_seconds") or [None]) for r in rows)
    wall = data.get("wall_seconds")
    extra = [("Matmul peak measured in the run", peaks)]
    extra.append(("Rounds", f"{rounds}, median reported" + (f"; {wall / 60:.0f} min in all" if wall else "")))
    ov = (data.get("machine") or {}).get("sentence_transformers_ov_env")
    if ov:
        extra.append(("ONNX / OpenVINO environment", ", ".join(f"{k} {v}" for k, v in ov.items())))

    def group(r: dict[str, Any]) -> tuple[str, str, str, bool]:
        return (r["task"], r.get("shape", "minilm"), r["corpus"], bool(r.get("busy")))

    groups: dict[tuple[str, str, str, bool], dict[str, dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(group(r), {})[r["system"]] = r
    systems = {r["system"] for r in rows}
    peers = [p for p in dict.fromkeys(map(_peer_package, sorted(systems))) if p]
    parts = [_provenance(path, data, extra, peers)]
    summary: list[tuple[str, str]] = []
    for task in dict.fromkeys(g[0] for g in groups):
        task_groups = {g: v for g, v in groups.items() if g[0] == task}
        peers = list(dict.fromkeys(s for v in task_groups.values() for s in v if not _is_ours(s)))
        base = BASELINE[task]
        header = ["model shape", "texts", "CPU load", "bge_core items/s"]
        exact = f"{base}-fp32" if any(f"{base}-fp32" in v for v in task_groups.values()) else None
        if peers:
            header += [f"÷ {SHORT.get(p, p)}" for p in peers] + ["÷ fastest peer"]
            if exact:
                header.append("bge_core fp32 ÷ fastest peer")
        table, best_ratios, exact_ratios = [], {False: [], True: []}, {False: [], True: []}
        for (_, shape, corpus, busy), systems in task_groups.items():
            ours = systems.get(base)
            if ours is None:
                continue
            texts = f"{corpus} ({ours['items']})" if "items" in ours else corpus
            cells = [shapes.get(shape, shape), texts, "1 core busy" if busy else "quiet", _num(ours["throughput"])]
            ratios = [ours["throughput"] / systems[p]["throughput"] if p in systems else None for p in peers]
            cells += [_ratio(x) for x in ratios]
            if peers:
                present = [x for x in ratios if x is not None]
                best = min(present) if present else None
                cells.append(f"**{_ratio(best)}**" if best else "")
                if best:
                    best_ratios[busy].append(best)
                if exact:
                    fastest = max((systems[p]["throughput"] for p in peers if p in systems), default=None)
                    same = systems[exact]["throughput"] / fastest if exact in systems and fastest else None
                    cells.append(_ratio(same))
                    if same:
                        exact_ratios[busy].append(same)
            table.append(cells)
        parts.append(f'**{TASKS.get(task, task)}**: bge_core at its defaults (`precision="auto"`) ÷ each peer')
        parts.append(_table(header, table, "lllr" + "r" * (len(header) - 4)))
        for busy, label in ((False, "quiet"), (True, "1 core busy")):
            if best_ratios[busy]:
                summary.append((f"{TASKS.get(task, task)} ÷ fastest peer, {label}", _span(best_ratios[busy])))
            if exact_ratios[busy]:
                comparison = f"{TASKS.get(task, task)}, bge_core fp32 ÷ fastest peer, {label}"
                summary.append((comparison, _span(exact_ratios[busy])))
    detail = []
    for r in rows:
        accuracy = accuracy_cell(r)
        mfu = f"{100 * r['mfu']:.0f}% ({r.get('mfu_peak', r['precision'])})" if "mfu" in r else ""
        detail.append(
            [
                r["task"],
                shapes.get(r.get("shape", "minilm"), r.get("shape", "minilm")),
                r["corpus"],
                "1 core busy" if r.get("busy") else "quiet",
                r["label"],
                PRECISIONS.get(r["precision"], r["precision"]),
                _num(r["throughput"]),
                _ratio(r.get("ours_over_this")),
                _ratio(r.get("quiet_over_busy")),
                f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "",
                mfu,
                accuracy,
            ]
        )
    header = ["task", "shape", "texts", "CPU load", "system", "precision", "items/s", "bge_core ÷ this"]
    header += ["quiet ÷ busy", "peak RSS MB", "MFU", "accuracy vs bge_core fp32"]
    parts.append(_details("Every row of this run", _table(header, detail, "llllllrrrrrl")))
    return Section("bench", str(data.get("date") or ""), data["cpu"], "\n\n".join(parts), tuple(summary))


# --------------------------------------------------------------------------- gpu.py
def _gpu(path: Path, data: dict[str, Any]) -> Section:
    checks = _require_rows(path, data, "checks", ("check", "shape", "ok"))
    rows = _require_rows(path, data, "throughput", ("task", "shape", "system"))
    _require(path, data, ["device", "cpu"])
    extra = [("GPU", str(data["device"])), ("Mode", str(data.get("mode", NOT_RECORDED)))]
    parts = [_provenance(path, data, extra)]
    dry = str(data.get("mode", "")).startswith("dry run")
    if dry:
        parts.insert(0, '!!! warning "A dry run: tiny models on the CPU, not a measurement"')
    check_rows = []
    for c in checks:
        detail = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in c.items()
            if k not in ("check", "shape", "ok")
        )
        check_rows.append([c["check"], c["shape"], detail, "yes" if c["ok"] else "NO"])
    parts.append(_table(["check", "shape", "result", "passed"], check_rows))
    table, summary = [], []
    for r in rows:
        if "sweep" in r:
            continue
        tps = _num(r["texts_per_s"]) if "texts_per_s" in r else r.get("error", "")
        peak = f"{r['peak_mb']:.0f}" if r.get("peak_mb") else ""
        waste = f"{100 * r['padding_waste']:.0f}%" if "padding_waste" in r else ""
        table.append([r["task"], r["shape"], r["system"], tps, _ratio(r.get("ours_over_this")), peak, waste])
        if "ours_over_this" in r and not r["system"].startswith("bge_core") and not dry:
            summary.append((f"GPU {r['task']} {r['shape']} ÷ {r['system']}", _ratio(r["ours_over_this"])))
    parts.append(
        _table(["task", "shape", "system", "texts/s", "bge_core ÷ this", "peak MB", "padding"], table, "lllrrrr")
    )
    return Section("gpu", str(data.get("date") or ""), data["cpu"], "\n\n".join(parts), tuple(summary))


# --------------------------------------------------------------------------- llm_rerank.py
LLM_LABELS = {
    "bge_core": 'bge_core defaults (`precision="auto"`)',
    "bge_core-fp32": 'bge_core `precision="fp32"`',
    "flag-best": "FlagLLMReranker, best batch",
    "flag-default": "FlagLLMReranker defaults (batch 128, fp32)",
}


def _llm_rerank(path: Path, data: dict[str, Any]) -> Section:
    rows = _require_rows(path, data, "rows", ("system", "pairs_per_s", "over_flag_default", "over_flag_best"))
    _require(path, data, ["cpu", "pairs", "rounds", "flag_best_batch"])
    extra = [
        ("Model", str(data.get("model", NOT_RECORDED))),
        ("Work", f"{data['pairs']} query/passage pairs, median of {data['rounds']} rounds, each in a fresh process"),
    ]
    best = data["flag_best_batch"]
    table, summary = [], []
    for r in rows:
        label = LLM_LABELS.get(r["system"], r["system"])
        if r["system"] == "flag-best":
            label += f" ({best})"
        diff = r.get("max_abs_diff_to_flag_fp32")
        table.append(
            [
                label,
                _num(r["pairs_per_s"]),
                _ratio(r["over_flag_default"]),
                _ratio(r["over_flag_best"]),
                "" if diff is None or r["system"] == "flag-default" else f"{diff:.1e}",
                ", ".join(f"{x:.1f}" for x in r.get("runs_seconds", [])),
            ]
        )
        if r["system"].startswith("bge_core"):
            summary.append(
                (f"LLM reranker, {LLM_LABELS[r['system']]} ÷ FlagLLMReranker best batch", _ratio(r["over_flag_best"]))
            )
    header = ["system", "pairs/s", "÷ FlagLLMReranker defaults", f"÷ FlagLLMReranker batch {best}"]
    header += ["max abs score change vs FlagLLMReranker fp32", "seconds per round"]
    parts = [_provenance(path, data, extra), _table(header, table, "lrrrrl")]
    return Section("llm_rerank", str(data.get("date") or ""), data["cpu"], "\n\n".join(parts), tuple(summary))


# --------------------------------------------------------------------------- serve_load.py
def _serve_load(path: Path, data: dict[str, Any]) -> Section:
    fields = ("server", "load", "requests_per_s", "texts_per_s", "p50_ms", "p95_ms", "wrong")
    rows = _require_rows(path, data, "rows", fields)
    _require(path, data, ["cpu"])
    extra = [("Model", str(data.get("model", NOT_RECORDED))), ("Rounds", str(data.get("rounds", NOT_RECORDED)))]
    extra.append(("Note", "the load generator shares the CPUs with the server under test"))
    table = [
        [
            r["server"],
            r["load"],
            _num(r["requests_per_s"]),
            _num(r["texts_per_s"]),
            f"{r['p50_ms']:.0f}",
            f"{r['p95_ms']:.0f}",
            f"{r['client_cpu_ms_per_request']:.2f}" if "client_cpu_ms_per_request" in r else "",
            str(r["wrong"]),
        ]
        for r in rows
    ]
    header = ["server", "load", "requests/s", "texts/s", "p50 ms", "p95 ms", "load generator CPU ms/request"]
    parts = [_provenance(path, data, extra), _table([*header, "wrong answers"], table, "llrrrrrr")]
    summary = []
    ratios = data.get("ratios") or []
    if ratios:
        parts.append(
            _table(
                ["load", "fastest peer", "bge-rag serve ÷ that peer"],
                [[x["load"], x["peer"], f"**{_ratio(x['ours_over_peer'])}**"] for x in ratios],
                "llr",
            )
        )
        summary = [(f"server, {x['load']} ÷ {x['peer']}", _ratio(x["ours_over_peer"])) for x in ratios]
    return Section("serve_load", str(data.get("date") or ""), data["cpu"], "\n\n".join(parts), tuple(summary))


# --------------------------------------------------------------------------- streaming_throughput.py
def _streaming(path: Path, data: dict[str, Any]) -> Section:
    rows = _require_rows(path, data, "rows", ("path", "texts_per_s", "over_in_memory"))
    _require(path, data, ["cpu", "texts"])
    work = f"{data['texts']} paragraphs, max_length {data.get('max_length', NOT_RECORDED)}, "
    work += (
        f"precision {data.get('precision', NOT_RECORDED)}, best of {data.get('repeat', NOT_RECORDED)} runs (not Ray)"
    )
    extra = [("Model", str(data.get("model", NOT_RECORDED))), ("Work", work)]
    table = []
    for r in rows:
        note = ""
        if "end_to_end_texts_per_s" in r:
            note = (
                f"end to end {_num(r['end_to_end_texts_per_s'])} texts/s, actor start-up {r['startup_seconds']:.1f} s"
            )
        table.append([r["path"], _num(r["texts_per_s"]), _ratio(r["over_in_memory"]), note])
    parts = [_provenance(path, data, extra), _table(["path", "texts/s", "÷ in-memory", "notes"], table, "lrrl")]
    return Section("streaming_throughput", str(data.get("date") or ""), data["cpu"], "\n\n".join(parts))


# --------------------------------------------------------------------------- eval_speed.py
def _eval_speed(path: Path, data: dict[str, Any]) -> Section:
    fields = ("system", "label", "precision", "median_seconds", "min_seconds", "max_seconds", "runs")
    rows = _require_rows(path, data, "rows", fields)
    _require(path, data, ["cpu", "dataset"])
    dataset = data["dataset"]
    work = (
        f"{dataset.get('queries', NOT_RECORDED)} queries, {dataset.get('corpus', NOT_RECORDED)} documents "
        f"({dataset.get('label', NOT_RECORDED)}, Python {dataset.get('python_version', NOT_RECORDED)}); "
        f"k {' '.join(map(str, data.get('k_values') or [])) or NOT_RECORDED}, batch size "
        f"{data.get('batch_size', NOT_RECORDED)}; {data.get('warmup', NOT_RECORDED)} untimed warm-up and "
        f"{data.get('repeat', NOT_RECORDED)} timed runs of each, alternating, each a fresh process with fresh "
        "output and cache folders"
    )
    extra = [("Model", str(data.get("model", NOT_RECORDED))), ("Work", work)]
    if data.get("reranker"):
        extra.insert(1, ("Reranker", f"{data['reranker']}, reranking each query's top {data.get('rerank_top_k')}"))
    table = []
    for r in rows:
        spread = f"{r['min_seconds']:.1f}-{r['max_seconds']:.1f}"
        ndcg = "" if r.get("ndcg_at_10") is None else f"{r['ndcg_at_10']:.4f}"
        table.append(
            [
                f"`{r['label']}`",
                r["precision"],
                f"{r['median_seconds']:.1f}",
                spread,
                str(r["runs"]),
                ndcg,
                _ratio(r.get("speedup_over_flag")),
            ]
        )
    header = ["command", "precision", "wall s (median)", "min-max", "runs", "nDCG@10", "FlagEmbedding ÷ this"]
    parts = [_provenance(path, data, extra, peers=("FlagEmbedding",)), _table(header, table, "llrrrrr")]
    summary = tuple(
        (f"`bge-rag eval` {r['precision']} ÷ FlagEmbedding's evaluation, wall time", _ratio(r["speedup_over_flag"]))
        for r in rows
        if r.get("speedup_over_flag") is not None
    )
    return Section("eval_speed", str(data.get("date") or ""), data["cpu"], "\n\n".join(parts), summary)


# --------------------------------------------------------------------------- accuracy scripts
def _storage(path: Path, data: dict[str, Any]) -> Section:
    fields = ("storage", "bytes_per_value", "dense_max_abs_error", "dense_min_cosine", "dense_score_change")
    rows = _require_rows(path, data, "rows", (*fields, "colbert_score_change"))
    _require(path, data, ["cpu", "docs"])
    work = f"{data['docs']} documents, {data.get('queries', NOT_RECORDED)} queries; scores over every pair"
    extra = [("Model", str(data.get("model", NOT_RECORDED))), ("Work", work)]
    table = [
        [
            r["storage"],
            str(r["bytes_per_value"]),
            f"{r['dense_max_abs_error']:.1e}",
            f"{r['dense_min_cosine']:.6f}",
            f"{r['dense_score_change']:.1e}",
            f"{r['colbert_score_change']:.1e}",
        ]
        for r in rows
    ]
    header = ["storage", "bytes/value", "dense max abs error", "dense min cosine", "dense score change"]
    parts = [_provenance(path, data, extra), _table([*header, "ColBERT score change"], table, "lrrrrr")]
    return Section("storage_accuracy", str(data.get("date") or ""), data["cpu"], "\n\n".join(parts))


def _bf16(path: Path, data: dict[str, Any]) -> Section:
    rows = _require_rows(path, data, "rows", ("fixture", "precision", "dense_min_cosine"))
    _require(path, data, ["cpu"])
    extra = [("Work", f"{data.get('texts', NOT_RECORDED)} texts: real paragraphs and edge cases, each fixture")]
    table = [
        [
            r["fixture"],
            r["precision"],
            f"{r['dense_min_cosine']:.6f}",
            f"{r['colbert_min_cosine']:.6f}" if "colbert_min_cosine" in r else "",
            f"{r['sparse_max_abs_change']:.1e}" if "sparse_max_abs_change" in r else "",
        ]
        for r in rows
    ]
    header = ["fixture model", "default precision here", "dense min cosine", "ColBERT min cosine"]
    parts = [_provenance(path, data, extra), _table([*header, "sparse max abs change"], table, "llrrr")]
    return Section("bf16_deviation", str(data.get("date") or ""), data["cpu"], "\n\n".join(parts))


def _eval_quality(path: Path, data: dict[str, Any]) -> Section:
    rows = _require_rows(path, data, "rows", ("mode", "reranker", "ndcg_at_10", "recall_at_10", "mrr_at_10"))
    _require(path, data, ["cpu", "dataset"])
    dataset = data["dataset"]
    extra = [
        (
            "Dataset",
            f"{dataset.get('label', NOT_RECORDED)}: {dataset.get('queries', NOT_RECORDED)} queries, "
            f"{dataset.get('corpus', NOT_RECORDED)} documents, Python {dataset.get('python_version', NOT_RECORDED)}",
        ),
        ("Model", str(data.get("model", NOT_RECORDED))),
        ("Reranker", f"{data.get('reranker', NOT_RECORDED)}, reranking each query's top {data.get('rerank_top_k')}"),
        ("Precision", str(data.get("precision", NOT_RECORDED))),
    ]
    metrics = [m for m in ("ndcg_at_10", "recall_at_10", "mrr_at_10", "recall_at_100") if m in rows[0]]
    table = [[f"`{r['mode']}`", r["reranker"], *(f"{r[m]:.4f}" for m in metrics)] for r in rows]
    parts = [_provenance(path, data, extra), _table(["mode", "reranker", *metrics], table, "ll" + "r" * len(metrics))]
    return Section("eval_quality", str(data.get("date") or ""), data["cpu"], "\n\n".join(parts))


# --------------------------------------------------------------------------- finetune_*.py
def _finetune_quality(path: Path, data: dict[str, Any]) -> Section:
    rows = _require_rows(path, data, "rows", ("variant", "ndcg_at_10", "recall_at_10", "ndcg_at_10_delta"))
    _require(path, data, ["cpu", "dataset", "settings"])
    dataset, settings = data["dataset"], data["settings"]
    sizes = dataset.get("split_sizes") or {}
    split = ", ".join(f"{k} {v}" for k, v in sizes.items()) or NOT_RECORDED
    work = (
        f"{settings.get('epochs', NOT_RECORDED)} epoch(s), batch {settings.get('batch_size', NOT_RECORDED)} queries, "
        f"group size {settings.get('group_size', NOT_RECORDED)}, lr {settings.get('learning_rate', NOT_RECORDED)} "
        f"(reranker {settings.get('reranker_learning_rate', NOT_RECORDED)}), temperature "
        f"{settings.get('temperature', NOT_RECORDED)}, max lengths {settings.get('query_max_len', NOT_RECORDED)} / "
        f"{settings.get('passage_max_len', NOT_RECORDED)} tokens, seed {settings.get('seed', NOT_RECORDED)}, "
        f"{data.get('precision', NOT_RECORDED)}"
    )
    wall = data.get("wall_seconds")
    extra = [
        (
            "Dataset",
            f"{dataset.get('label', NOT_RECORDED)}, Python {dataset.get('python_version', NOT_RECORDED)}: "
            f"{dataset.get('corpus', NOT_RECORDED)} documents; queries split {dataset.get('split', NOT_RECORDED)} "
            f"({split}); every figure is on the test queries",
        ),
        ("Model", str(data.get("model", NOT_RECORDED))),
        ("Training", work + (f"; {wall / 60:.0f} min in all" if wall else "")),
    ]
    first = data.get("reranker_first_stage") or {}
    if first:
        chosen = (data.get("dev") or {}).get(str(first.get("embedder_key")), {})
        dev = f", dev nDCG@10 {chosen['ndcg_at_10']:.4f}" if "ndcg_at_10" in chosen else ""
        extra.append(
            (
                "Reranker",
                f"reranks the top {settings.get('rerank_top_k', NOT_RECORDED)} of the embedder "
                f"*{first.get('embedder', NOT_RECORDED)}* (the fine-tuned one better on the dev queries{dev}); "
                "the untrained head is the checkpoint's new random head, as training starts from it",
            )
        )
    metrics = [m for m in ("ndcg_at_10", "recall_at_10", "mrr_at_10") if all(m in r for r in rows)]
    names = {"ndcg_at_10": "nDCG@10", "recall_at_10": "recall@10", "mrr_at_10": "MRR@10"}
    table = []
    for r in rows:
        delta = "" if r["variant"] == "zero-shot" else f"{r['ndcg_at_10_delta']:+.4f}"
        recall = r.get("recall_at_10_delta")
        recall_delta = "" if r["variant"] == "zero-shot" or recall is None else f"{recall:+.4f}"
        table.append([r["variant"], *(f"{r[m]:.4f}" for m in metrics), delta, recall_delta])
    header = ["variant", *(names[m] for m in metrics), "Δ nDCG@10 vs zero-shot", "Δ recall@10 vs zero-shot"]
    parts = [_provenance(path, data, extra, peers=("sentence-transformers",))]
    parts.append(_table(header, table, "l" + "r" * (len(header) - 1)))
    commands = data.get("commands") or []
    if commands:
        body = "\n".join(f"{c['command']}  # {c.get('seconds', '?')} s" for c in commands)
        parts.append(_details("The commands of this run (in a temporary folder)", f"```bash\n{body}\n```"))
    return Section("finetune_quality", str(data.get("date") or ""), data["cpu"], "\n\n".join(parts))


def _finetune_speed(path: Path, data: dict[str, Any]) -> Section:
    rows = _require_rows(path, data, "rows", ("kind", "system", "label", "precision", "pairs_per_second", "runs"))
    _require(path, data, ["cpu", "settings"])
    settings = data["settings"]
    work = (
        f"{settings.get('steps', NOT_RECORDED)} steps x {settings.get('batch_size', NOT_RECORDED)} queries x group "
        f"size {settings.get('group_size', NOT_RECORDED)} = {settings.get('pairs_per_run', NOT_RECORDED)} (query, "
        f"passage) pairs a run, max lengths {settings.get('query_max_len', NOT_RECORDED)} / "
        f"{settings.get('passage_max_len', NOT_RECORDED)} tokens; {data.get('repeat', NOT_RECORDED)} rounds, "
        "systems alternating, each run a fresh process; time = the Trainer's train_runtime (loading and saving "
        "excluded)"
    )
    extra = [("Model", str(data.get("model", NOT_RECORDED))), ("Work", work)]
    table, summary = [], []
    for r in rows:
        spread = (
            f"{_num(r['min_pairs_per_second'])}-{_num(r['max_pairs_per_second'])}"
            if "min_pairs_per_second" in r
            else ""
        )
        table.append(
            [
                r["kind"],
                f"`{r['label']}`",
                r["precision"],
                _num(r["pairs_per_second"]),
                spread,
                str(r["runs"]),
                _ratio(r.get("over_flag")),
            ]
        )
        if r.get("over_flag") is not None:
            summary.append(
                (f"fine-tuning, {r['kind']}, `{r['label']}` ÷ FlagEmbedding's runner", _ratio(r["over_flag"]))
            )
    header = ["model", "command", "precision", "pairs/s (median)", "min-max", "runs", "this ÷ FlagEmbedding"]
    parts = [_provenance(path, data, extra, peers=("FlagEmbedding",)), _table(header, table, "lllrrrr")]
    commands = [r["command"] for r in rows if r.get("command")]
    if commands:
        body = "\n".join(commands)
        parts.append(_details("The command of each row (in a temporary folder)", f"```bash\n{body}\n```"))
    return Section("finetune_speed", str(data.get("date") or ""), data["cpu"], "\n\n".join(parts), tuple(summary))


RENDERERS: dict[str, Callable[[Path, dict[str, Any]], Section]] = {
    "bench": _bench,
    "gpu": _gpu,
    "llm_rerank": _llm_rerank,
    "serve_load": _serve_load,
    "streaming_throughput": _streaming,
    "eval_speed": _eval_speed,
    "eval_quality": _eval_quality,
    "finetune_speed": _finetune_speed,
    "finetune_quality": _finetune_quality,
    "bf16_deviation": _bf16,
    "storage_accuracy": _storage,
}
TITLES = {
    "bench": "Embedding and reranking on the CPU, against the peers",
    "gpu": "One CUDA GPU",
    "llm_rerank": "LLM rerankers",
    "serve_load": "Serving over HTTP, against Infinity",
    "streaming_throughput": "Corpus-scale embedding: streaming to Parquet and Ray Data",
    "eval_speed": "Retrieval evaluation, end to end, against FlagEmbedding's",
    "eval_quality": "Retrieval quality on real text, by mode (bge-rag eval)",
    "finetune_speed": "Fine-tuning throughput, against FlagEmbedding's runners",
    "finetune_quality": "Fine-tuning on real text: held-out quality before and after",
    "bf16_deviation": "Accuracy of the default precision against fp32",
    "storage_accuracy": "Accuracy of float16 and int8 storage",
}
REPRODUCE = {
    "bench": "`./dev.sh bench --focused` (3 model shapes, quiet and with one core busy, against sentence-transformers "
    "with ONNX and OpenVINO) or `./dev.sh bench` (every peer on MiniLM; about an hour on 2 cores). Every system runs "
    "on the same texts and model folder, each timed run in a fresh process, systems interleaved. Texts: *realistic* "
    "= documentation paragraphs of mixed lengths, *queries* = short queries, *long* = documents of 480-512 tokens, "
    "*pairs* = query/paragraph pairs for the rerankers. *1 core busy* = another process spinning on one of the cores "
    "for the whole timed run. bge-base and the 1024 width have random weights saved from the real configurations "
    "(the same arithmetic as trained weights); MiniLM has its real weights",
    "gpu": "`./dev.sh gpu` on a machine with one CUDA GPU",
    "llm_rerank": "`python benchmarks/llm_rerank.py --layers 2 --pairs 8 --rounds 2 --flag-batches 2,4 --out "
    "benchmarks/results/llm-rerank.json` (bge-reranker-v2-gemma's widths with a few layers and random weights, built "
    "in code; FlagLLMReranker at its defaults and at the fastest of the batch sizes tried)",
    "serve_load": "`./dev.sh bench-serve --out benchmarks/results/serve-load.json`",
    "streaming_throughput": "`python benchmarks/streaming_throughput.py --out benchmarks/results/streaming.json`",
    "eval_speed": "`python benchmarks/eval_speed.py --out benchmarks/results/eval-speed.json` (`--model` and "
    "`--dataset` for others). The wall time of `bge-rag eval` and of `python -m FlagEmbedding.evaluation.custom` "
    "with the same command-line options on the same dataset folder and model, start-up to metrics; FlagEmbedding "
    "computes in fp32 on the CPU. *FlagEmbedding ÷ this* is FlagEmbedding's median wall time divided by the row's: "
    "above 1 means the row is faster",
    "eval_quality": "`python benchmarks/eval_quality.py --out benchmarks/results/eval-quality.json`. FlagEmbedding's "
    "metrics (pytrec_eval) of each retrieval mode of `bge-rag eval`, with and without a reranker, on a retrieval set "
    "built offline from the Python standard library's docstrings (query: a docstring's first sentence; relevant "
    "document: the rest of it). The weights are all-MiniLM-L6-v2's real ones; the BGE-M3 heads and the reranker's "
    "scoring head are random (no trained ones can be had offline), so the sparse, ColBERT, hybrid and reranked rows "
    "show the mechanism at work on real text, not BGE-M3's or a trained reranker's quality",
    "finetune_speed": "`python benchmarks/finetune_speed.py --out benchmarks/results/finetune-speed.json`. "
    "(query, passage) pairs per second of training: `python -m FlagEmbedding.finetune.embedder.encoder_only.base` "
    "(and `...reranker.encoder_only.base`) against `bge-rag finetune embedder` (`reranker`) with the identical "
    "argument list, fp32, and with `--bf16`; the time is the Hugging Face Trainer's `train_runtime` of each run. "
    "*this ÷ FlagEmbedding* is the row's median throughput divided by FlagEmbedding's: above 1 means the row is "
    "faster",
    "finetune_quality": "`python benchmarks/finetune_quality.py --out benchmarks/results/finetune-quality.json`. "
    "all-MiniLM-L6-v2 (real weights) fine-tuned with `bge-rag finetune` on the standard-library docstring set, "
    "its queries split by top-level package (no package has queries in both training and test), and measured on "
    "the held-out test queries with FlagEmbedding's metrics: zero-shot, fine-tuned with random negatives, "
    "fine-tuned with negatives mined by `bge-rag mine-negatives`, and a reranker fine-tuned from the same "
    "checkpoint (a new scoring head) reranking the fine-tuned embedder (the one better on the dev queries) before "
    "and after training",
    "bf16_deviation": "`python benchmarks/bf16_deviation.py --out benchmarks/results/bf16-deviation.json`. Minimum "
    "cosine between the default precision's vectors and fp32's, on the offline fixture models (real MiniLM weights, "
    "tiny random decoders); on a CPU without native bf16 the default is fp32 and the cosines are 1",
    "storage_accuracy": "`python benchmarks/storage_accuracy.py --out benchmarks/results/storage-accuracy.json` "
    "(`--model` for a real checkpoint). What `bge_core.storage.compress` costs in accuracy: errors of the stored "
    "values and the largest change of a dense or ColBERT score",
}

INTRO = """# Benchmarks

Every figure on this page comes from a results file in `benchmarks/results/`, written by the script
and command named under each table; the page itself is generated from those files by
`benchmarks/report.py`. Each table names the CPU it ran on, whether that CPU computes bf16 natively
(bge_core's default precision is bf16 there and fp32 elsewhere), the date and the software versions;
what a run did not record says "not recorded". Runs on different CPUs or dates are not comparable
with one another: compare within a table, where every system ran on the same machine, texts and
model folder. Where a run recorded the load average, it is shown: at the start, a figure well above
zero means other work was sharing the CPUs during the run.

**How to read the ratios.** "bge_core ÷ X" is bge_core's throughput divided by X's, in the same run:
above 1 means bge_core is faster. bge_core runs at its defaults (`precision="auto"`) unless a row
says fp32; the accuracy columns give how far the approximate paths move from fp32. For what the
engine does to get there and which settings change it, see [Performance](performance.md).

**Reproduce** (each command writes its results file; `python benchmarks/report.py` prints this page):

```bash
./dev.sh bench --focused   # the CPU tables: 3 model shapes x quiet / one core busy
./dev.sh bench             # every peer on MiniLM, about an hour on 2 cores; --quick for a smoke run
./dev.sh gpu               # one CUDA GPU; --dry-run runs it on the CPU with tiny models
python benchmarks/llm_rerank.py --layers 2 --pairs 8 --rounds 2 --flag-batches 2,4 \
    --out benchmarks/results/llm-rerank.json
python benchmarks/streaming_throughput.py --out benchmarks/results/streaming.json
python benchmarks/eval_speed.py --out benchmarks/results/eval-speed.json
python benchmarks/eval_quality.py --out benchmarks/results/eval-quality.json
python benchmarks/finetune_speed.py --out benchmarks/results/finetune-speed.json
python benchmarks/finetune_quality.py --out benchmarks/results/finetune-quality.json
python benchmarks/bf16_deviation.py --out benchmarks/results/bf16-deviation.json
python benchmarks/storage_accuracy.py --out benchmarks/results/storage-accuracy.json
python benchmarks/report.py > /tmp/benchmarks.md         # preview this page
```"""


def _sections(results: Path) -> list[tuple[Path, Section]]:
    files = sorted(results.glob("*.json"))
    if not files:
        raise ResultsError(f"{results}: no results files (*.json)")
    out = []
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{path.name}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ResultsError(f"{path.name}: the top level must be a JSON object")
        out.append((path, RENDERERS[_kind(path, data)](path, data)))
    return out


def render(results: str | Path | None = None) -> str:
    """The whole benchmark page (Markdown), from the results files in ``results``.

    Args:
        results: the folder of results files (default ``benchmarks/results`` next to this script).

    Raises:
        ResultsError: a file is not valid JSON, names no known script in its ``command``, or lacks a
            field its table needs; the message starts with the file's name.
    """
    sections = _sections(Path(results) if results is not None else RESULTS)
    order = list(RENDERERS)
    sections.sort(key=lambda item: item[0].name)
    sections.sort(key=lambda item: item[1].date, reverse=True)  # newest first within a kind
    sections.sort(key=lambda item: order.index(item[1].kind))
    summary = [
        [f"[{_heading_text(path, s)}](#{_anchor(_heading_text(path, s))})", comparison, ratio]
        for path, s in sections
        for comparison, ratio in s.summary
    ]
    parts = [INTRO]
    if summary:
        parts += [
            "## Summary",
            "The headline ratio of each run (ranges are over model shapes and text sets). Details below.",
            _table(["run", "comparison", "bge_core ÷ peer"], summary, "llr"),
        ]
    for kind in order:
        mine = [(p, s) for p, s in sections if s.kind == kind]
        if not mine:
            continue
        parts += [f"## {TITLES[kind]}", f"Reproduce: {REPRODUCE[kind]}."]
        for path, section in mine:
            parts += [f"### {_heading_text(path, section)}", section.text]
    return "\n\n".join(parts) + "\n"


def _heading_text(path: Path, section: Section) -> str:
    return f"{section.cpu}, {section.date or 'date not recorded'} ({path.stem})"


def _anchor(heading: str) -> str:
    """MkDocs' default slug: lower case, punctuation dropped, spaces to hyphens."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text).strip("-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(RESULTS), help="folder of results files (default: %(default)s)")
    parser.add_argument("--out", help="write the page here instead of printing it")
    args = parser.parse_args(argv)
    if args.out and Path(args.out).resolve() == RESULTS.parent.parent / "docs" / "benchmarks.md":
        parser.error(
            "docs/benchmarks.md is generated when the site is built (hooks/generated_pages.py); "
            "write the preview elsewhere, e.g. --out /tmp/benchmarks.md"
        )
    page = render(args.results)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(page, encoding="utf-8")
    else:
        print(page, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
