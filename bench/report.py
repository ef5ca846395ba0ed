"""The benchmark's results as one typed record, JSON and a printed table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.agreement import AgreementResult
from bench.common import UNTRAINED, Machine, median_ratio
from bench.duplicates import DuplicatesResult
from bench.duplicates import describe as describe_duplicates
from bench.embed import RawResult, ServedResult
from bench.fanout import FanOutResult
from bench.index import IndexResult
from bench.query import QueryResult
from bench.ray_local import RayResult
from bench.scale import ScaleRow
from bench.scale import describe as describe_scale
from bench.startup import StartupResult
from bench.sync import SyncResult
from bench.sync import describe as describe_sync


@dataclass
class BenchResults:
    quick: bool
    machine: Machine
    configs: list[str]
    weights: str = UNTRAINED  # the model's --weights in every runtime
    raw: dict[str, RawResult] = field(default_factory=dict)
    agreement: list[AgreementResult] = field(default_factory=list)
    served: list[ServedResult] = field(default_factory=list)
    startup: list[StartupResult] = field(default_factory=list)
    query: list[QueryResult] = field(default_factory=list)
    index: list[IndexResult] = field(default_factory=list)
    fan_out: FanOutResult | None = None
    index_rss_mb: float | None = None
    quantization: list[dict[str, Any]] = field(default_factory=list)  # int8: how, how long
    duplicates: DuplicatesResult | None = None
    ray: list[RayResult] = field(default_factory=list)
    scale: list[ScaleRow] = field(default_factory=list)
    sync: SyncResult | None = None

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def table(results: BenchResults) -> str:
    weights = "untrained" if results.weights == UNTRAINED else results.weights
    lines = [
        f"machine: {results.machine.describe()}, Python {results.machine.python}; weights "
        f"{weights}",
        "",
    ]
    reference = results.raw.get("tensorflow/float32")
    ov_f32 = results.raw.get("openvino/float32")
    for label, raw in results.raw.items():
        vs = f" ({raw.bs32_img_s / reference.bs32_img_s:.2f}x TF f32)" if reference else ""
        if ov_f32 and label != ov_f32.config:
            # rounds interleaved: each round's ratio, median
            vs += f" ({median_ratio(raw.rounds_bs32, ov_f32.rounds_bs32):.2f}x OV f32)"
        ov_bf16 = results.raw.get("openvino/bfloat16")
        if ov_bf16 and label == "openvino/int8":
            vs += f" ({median_ratio(raw.rounds_bs32, ov_bf16.rounds_bs32):.2f}x OV bf16)"
        lines.append(
            f"raw {label:<19} batch 32 {raw.bs32_img_s:6.1f} img/s{vs} | batch 1 p50 "
            f"{raw.bs1_p50_ms:6.1f} ms"
        )
    for a in results.agreement:
        lines.append(
            f"agreement {a.config:<13} vs TF float32 on {a.photos} real photos: top-10 "
            f"{a.top10_vs_tensorflow_float32:.4f}, "
            f"min cosine {a.min_cosine_vs_tensorflow_float32:.6f} (TF f32's own 10th-11th "
            f"neighbour gap {a.reference_gap_10th_11th:.5f})"
        )
    for q in results.quantization:
        lines.append(
            f"quantized {q['config']} with NNCF {q['nncf']} on {q['photos']} photos "
            f"({q['calibration']}) in {q['seconds']:.1f} s"
        )
    served_f32 = next((s for s in results.served if s.config == "openvino/float32"), None)
    for s in results.served:
        if served_f32 and s is not served_f32:
            lines.append(
                f"served {s.config} vs openvino/float32: 1 client "
                f"{s.grpc_1_client_img_s / served_f32.grpc_1_client_img_s:.2f}x, 8 clients "
                f"{s.grpc_8_clients_img_s / served_f32.grpc_8_clients_img_s:.2f}x, dump "
                f"{s.dump_img_s / served_f32.dump_img_s:.2f}x (served sections run one "
                "config after the other)"
            )
    for s in results.served:
        lines.append(
            f"served {s.config:<16} raw bs32 {s.raw_bs32_img_s:6.1f} | 1 client "
            f"{s.grpc_1_client_img_s:6.1f} ({s.ratio_1_client_vs_raw:.2f}x) | 8 clients "
            f"{s.grpc_8_clients_img_s:6.1f} ({s.ratio_8_clients_vs_raw:.2f}x) | dump "
            f"{s.dump_img_s:6.1f} ({s.ratio_dump_vs_raw:.2f}x) img/s | RSS "
            f"{s.embedder_rss_mb:.0f} MB | served=raw cos >= {s.served_vs_raw_min_cosine:.5f}"
        )
    for st in results.startup:
        cold = f"{st.cold_s:.1f} s converting, " if st.cold_s is not None else ""
        lines.append(
            f"start-up {st.config:<14} to SERVING: {cold}{st.cached_s:.1f} s "
            f"{'from cached IR' if st.config.startswith('openvino') else ''} | RSS idle "
            f"{st.rss_mb:.0f} MB"
        )
    for q in results.query:
        lines.append(
            f"query {q.config:<17} image -> top-10, 2 shards: p50 {q.p50_ms:.1f} ms, p99 "
            f"{q.p99_ms:.1f} ms; bare bs1 {q.bare_bs1_p50_ms:.1f} ms (target <= "
            f"{q.target_ms:.1f} ms); own photo first {q.top1_is_self:.2f}"
        )
    for index in results.index:
        lines.append(f"index {index.dataset} (50 trees):")
        for r in index.rows:
            build = f", build {r.build_s:.1f} s" if r.build_s is not None else ""
            lines.append(
                f"  {r.label:<30} recall@10 {r.recall_at_10:.3f}  p50 {r.p50_ms:.2f} ms{build}"
            )
    if results.fan_out is not None:
        f = results.fan_out
        parts = ", ".join(f"{k} {v:.2f} ms" for k, v in f.p50_ms.items())
        pca = f", pca-256 {f.ratio_4_vs_1_pca256:.2f}x" if f.ratio_4_vs_1_pca256 is not None else ""
        lines.append(f"fan-out p50: {parts}; 4 vs 1 shards {f.ratio_4_vs_1:.2f}x{pca}")
    for r in results.ray:
        lines.append(
            f"bulk dump {r.config:<13} {r.images} photos: gRPC dump {r.grpc_dump_img_s:6.1f} "
            f"img/s | imagesim dump --engine ray ({r.actors} actor, batch {r.batch_size}, local "
            f"Ray) {r.ray_img_s:6.1f} img/s whole run ({r.ratio_whole_vs_grpc:.2f}x gRPC), "
            f"start-up {r.ray_start_s:.1f} s, <= {r.ray_after_start_img_s:.1f} img/s after it | "
            f"Ray=gRPC cos >= {r.min_cosine_ray_vs_grpc:.5f}"
        )
    if results.index_rss_mb is not None:
        lines.append(f"index shard RSS (built): {results.index_rss_mb:.0f} MB")
    if results.duplicates is not None:
        lines.append(describe_duplicates(results.duplicates))
    lines += [describe_scale(row) for row in results.scale]
    if results.sync is not None:
        lines.append(describe_sync(results.sync))
    return "\n".join(lines)
