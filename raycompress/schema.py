"""What a run measured, as types: the one owner of every name between measuring and recording.

    CollapseStats   one layer's neural-collapse statistics on one split (`metrics.nc` builds it)
    CollapseReport  one split: loss, accuracy and the statistics of layers 1..L
    HeadFit, Head   one decoder's training and score
    Term            one 𝒱-information quantity of one measurement: value, protocol, heads, curve
    VInfoResult     one (layer, split) measurement: its terms, its decoders, its error
    EpochRecord     one epoch of a run: the step loss, both splits, the measurements

Each type writes itself to plain JSON (`to_json`: strings, numbers, lists and dicts only; the
history file of `record`, and the kept layer-0 values in a checkpoint's state), reads itself
back (`from_json`, histories written before these types included) and yields its own tidy rows
(`rows`; the frame of `results.load`). A name the readers select by — a statistic, a term, a
stop reason — is a constant here, never rebuilt or parsed from a string elsewhere. No torch,
no Ray, no files.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from raycompress.stopping import Stop

SPLITS = ("train", "test")

# ------------------------------------------------------------------------------- tidy rows

# The columns of a tidy row; `results.load` adds the trial's and its configuration's in front.
COLUMNS = ("epoch", "split", "layer", "family", "metric", "budget", "value", "saturated", "note")
BUDGET = "budget"  # decoder epochs of a budget-curve point; None (<NA>) on every other row
FAMILY = "family"  # a 𝒱-information value's decoder family (`metrics.families`); None elsewhere
# whether a certified 𝒱-information value sits at its ceiling (`Term.saturated`); None elsewhere
SATURATED = "saturated"
Row = tuple[int, str, int | None, str | None, str, int | None, float, bool | None, str]
NETWORK = "network"  # the thesis' decoder family: every value recorded before families were
VInfoKey = tuple[int, str, str]  # an epoch's measurement: (layer, split, family label)
MeasurementKey = tuple[int, str, int, str]  # … of a run: (epoch, split, layer, family label)


def row(
    epoch: int, split: str, layer: int | None, metric: str, value: float, note: str = "", *,
    family: str | None = None, budget: int | None = None, saturated: bool | None = None,
) -> Row:  # fmt: skip
    """One tidy row (COLUMNS), its 𝒱-information columns None unless given."""
    return (epoch, split, layer, family, metric, budget, float(value), saturated, note)


# Whole-network metrics (layer None).
TRAIN_STEP_LOSS, LOSS, ACCURACY = "train_step_loss", "loss", "accuracy"


class Baseline(StrEnum):
    """The literature's generalisation measures (`metrics.baselines`), measured once per run,
    on the training split at the epoch where training stops: whole-network rows."""

    SUM_SQUARED_WEIGHTS = "gm_sum_squared_weights"
    DISTANCE_FROM_INIT = "gm_distance_from_init"
    LOG_SPECTRAL_PRODUCT = "gm_log_spectral_product"
    PATH_NORM = "gm_path_norm"
    MARGIN = "gm_margin_p10"
    PAC_BAYES_FLATNESS = "gm_pac_bayes_flatness"  # magnitude-aware


def _joined(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


# ------------------------------------------------------------------------- neural collapse


class NC(StrEnum):
    """The neural-collapse statistics, each spelt once: the field of `CollapseStats`, the
    history key, the summary key and the tidy metric."""

    TRACE = "nc_trace"  # tr(Σ_W Σ_B⁺)
    RANK = "nc_rank"  # rank Σ_B used by the pseudo-inverse
    EIG_TOL = "nc_eig_tol"  # absolute eigenvalue tolerance behind that rank
    WITHIN_TRACE = "nc_within_trace"  # tr(Σ_W)
    BETWEEN_TRACE = "nc_between_trace"  # tr(Σ_B)
    CDNV = "nc_cdnv"
    EQUINORM = "nc_equinorm"
    EQUIANGULARITY = "nc_equiangularity"
    SELF_DUALITY = "nc_self_duality"
    NCC_AGREEMENT = "nc_ncc_agreement"
    TRACE_RATIO = "nc_trace_ratio"  # tr(Σ_W)/tr(Σ_B), derived: not stored


@dataclass(frozen=True)
class CollapseStats:
    """Every neural-collapse statistic of one layer on one split, with the decisions behind it.

    path: how Σ_W was reached ("two_pass", "features" or "scatter"). nc_ncc_agreement is NaN
    on the scatter path, which keeps no per-sample pass after the means are known;
    nc_self_duality is NaN unless classifier weights were given (the penultimate layer).
    """

    nc_trace: float
    nc_rank: int
    nc_eig_tol: float
    nc_within_trace: float
    nc_between_trace: float
    nc_cdnv: float
    nc_equinorm: float
    nc_equiangularity: float
    nc_self_duality: float
    nc_ncc_agreement: float  # NC4: fraction of samples whose nearest class mean is the prediction
    num_samples: int
    dim: int
    path: str

    @property
    def nc_trace_ratio(self) -> float:
        """tr(Σ_W)/tr(Σ_B), the simplified NC metric of the literature."""
        if self.nc_between_trace == 0:
            return math.inf if self.nc_within_trace > 0 else math.nan
        return self.nc_within_trace / self.nc_between_trace

    def statistics(self) -> dict[NC, float]:
        return {stat: getattr(self, stat) for stat in NC}

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CollapseStats:
        if NC.RANK not in data:  # written before the statistics had one spelling
            data = {_LEGACY_NC.get(key, key): value for key, value in data.items()}
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def rows(self, epoch: int, split: str, layer: int) -> list[Row]:
        """One row per statistic; the note says which path reached Σ_W."""
        return [row(epoch, split, layer, s, v, self.path) for s, v in self.statistics().items()]


_LEGACY_NC = {stat.removeprefix("nc_"): stat for stat in NC if stat != NC.TRACE}


@dataclass(frozen=True)
class CollapseReport:
    """One split at one point of training: loss (nats) and accuracy of the network in the
    measurement batch order, and the collapse statistics of layers 1..L (L = penultimate)."""

    loss: float
    accuracy: float
    layers: dict[int, CollapseStats]

    def to_json(self) -> dict[str, Any]:
        layers = {str(layer): stats.to_json() for layer, stats in self.layers.items()}
        return {LOSS: self.loss, ACCURACY: self.accuracy, "layers": layers}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CollapseReport:
        layers = {int(k): CollapseStats.from_json(v) for k, v in data["layers"].items()}
        return cls(data[LOSS], data[ACCURACY], layers)

    def rows(self, epoch: int, split: str) -> list[Row]:
        out = [
            row(epoch, split, None, LOSS, self.loss),
            row(epoch, split, None, ACCURACY, self.accuracy),
        ]
        for layer, stats in self.layers.items():
            out += stats.rows(epoch, split, layer)
        return out


# --------------------------------------------------------------------------- 𝒱-information


class Quantity(StrEnum):
    """The 𝒱-information quantities (bits): each the metric of its reported value."""

    SUFFICIENCY = "v_suff"  # I_𝒱(h → y), fitted and scored on the split
    MINIMALITY = "v_min"  # I_𝒱(h → Dec(x, 𝒴)), the mean over the relabelling's digits
    HELD_OUT = "v_suff_held_out"  # I_𝒱(h → y), fitted on one half, scored on the other

    @property
    def raw(self) -> str:
        """The metric of the unclipped value."""
        return f"{self}_raw"

    @property
    def at_budget(self) -> str:
        """The metric of the budget-curve points (their decoder epochs in BUDGET)."""
        return f"{self}_at_budget"

    @property
    def last_gain(self) -> str:
        """The metric of the convergence indicator: bits gained between the last two budgets."""
        return f"{self}_last_gain"

    @property
    def certified(self) -> str:
        """The metric of the converged protocol's verdict: 1 when every decoder is certified."""
        return f"{self}_certified"


HEADLINE = (Quantity.SUFFICIENCY, Quantity.MINIMALITY)  # what every measurement reports
MC_MEAN, MC_STD = "v_min_mc_mean", "v_min_mc_std"  # minimality over Monte-Carlo relabellings
H_Y = "h_y_bits"  # H(y) of the sufficiency decoder's scored labels
NUM_DIGITS = "num_digits"  # N_D, the relabelling's base-C digits
CLIPPED = "clipped"  # whether a reported value was clipped at 0
SUFF_HEAD, HELD_OUT_HEAD = "suff", "held_out"


def digit_head(j: int) -> str:
    """The minimality decoder of relabelling digit j."""
    return f"digit{j}"


def epochs_metric(head: str) -> str:
    """The metric of a decoder's epochs used (its note: why it stopped)."""
    return f"{head}_epochs"


def head_names(num_digits: int) -> list[str]:
    """Every decoder a measurement with N_D digits can have, sufficiency's first."""
    return [SUFF_HEAD, HELD_OUT_HEAD, *map(digit_head, range(num_digits))]


def digit_metrics(j: int) -> tuple[str, str]:
    """The metrics of digit j's own minimality (raw bits) and of its entropy H(digit j)."""
    return f"{Quantity.MINIMALITY}_digit{j}_raw", f"h_digit{j}_bits"


@dataclass(frozen=True)
class HeadFit:
    """How one decoder's training ended: epochs used, the reason, its last epoch loss (nats);
    under the converged protocol also whether it is certified and its scored gain over its
    last quadrupling of epochs (bits; None before its third budget; the affine optimum's: over
    its last doubling of iterations). None under the thesis'."""

    epochs: int
    stop: Stop
    train_loss: float
    certified: bool | None = None
    last_gain: float | None = None

    @property
    def converged(self) -> bool:
        return self.stop.converged


@dataclass(frozen=True)
class Head:
    """One decoder behind a term: its fit, the entropy H(t) of its scored targets and its raw
    𝒱-information H(t) − CE (bits; NaN for a diverged decoder)."""

    name: str
    fit: HeadFit
    entropy: float
    bits: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "epochs": self.fit.epochs, "stop": self.fit.stop.value,
            "train_loss": self.fit.train_loss, "entropy": self.entropy, "bits": self.bits,
            "certified": self.fit.certified, "last_gain": self.fit.last_gain,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Head:
        fit = HeadFit(
            data["epochs"], Stop(data["stop"]), data["train_loss"], data.get("certified"),
            data.get("last_gain"),
        )  # fmt: skip
        return cls(data["name"], fit, data["entropy"], data["bits"])


@dataclass(frozen=True)
class Term:
    """One 𝒱-information quantity of one measurement (bits).

    value: what is reported (raw, or 0 where a negative value was clipped); protocol: which
    split fitted and which scored, and how the value was reached; heads: its decoders
    (minimality: one per digit of the relabelling); curve: budget (decoder epochs) → raw bits
    after that many epochs, a head that stopped earlier keeping its final value; monte_carlo:
    minimality's (mean, std) over the extra relabellings, when there were any; saturated:
    whether the certified value sits within its certificate's slack of its ceiling (`entropy`:
    the family memorises this split), None where no value was certified.
    """

    quantity: Quantity
    value: float
    raw: float
    protocol: str
    heads: tuple[Head, ...]
    curve: dict[int, float]
    monte_carlo: tuple[float, float] | None = None
    saturated: bool | None = None

    @property
    def last_gain(self) -> float | None:
        """The convergence indicator: bits gained between the last two budgets (None with
        fewer than two)."""
        budgets = sorted(self.curve)
        if len(budgets) < 2:
            return None
        return self.curve[budgets[-1]] - self.curve[budgets[-2]]

    @property
    def certified(self) -> bool | None:
        """Whether every decoder of the term is certified (the converged protocol); None
        where they were not judged (the thesis protocol)."""
        verdicts = [h.fit.certified for h in self.heads]
        if not verdicts or None in verdicts:
            return None
        return all(verdicts)

    @property
    def entropy(self) -> float:
        """The term's ceiling H(t) (bits): the mean entropy of its decoders' scored targets
        (H(y) for sufficiency); NaN without decoders."""
        return sum(h.entropy for h in self.heads) / len(self.heads) if self.heads else math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value, "raw": self.raw, "protocol": self.protocol,
            "heads": [head.to_json() for head in self.heads],
            "curve": {str(budget): bits for budget, bits in self.curve.items()},
            "monte_carlo": None if self.monte_carlo is None else list(self.monte_carlo),
            "saturated": self.saturated,
        }  # fmt: skip

    @classmethod
    def from_json(cls, quantity: Quantity, data: dict[str, Any]) -> Term:
        mc = data["monte_carlo"]
        return cls(
            quantity, data["value"], data["raw"], data["protocol"],
            tuple(map(Head.from_json, data["heads"])),
            {int(budget): bits for budget, bits in data["curve"].items()},
            None if mc is None else (mc[0], mc[1]), data.get("saturated"),
        )  # fmt: skip

    def rows(self, key: MeasurementKey, error: str) -> list[Row]:
        """Its value, raw value, convergence indicator, entropies, per-head values and epochs,
        and budget curve. The values carry the protocol with each decoder's epochs and stop;
        each epoch count its stop reason; each curve point the decoders carried to it; the
        value and the raw value whether they are saturated."""
        epoch, split, layer, family = key
        q = self.quantity
        runs = ", ".join(f"{h.fit.epochs} ({h.fit.stop})" for h in self.heads)
        noted = _joined(f"{self.protocol}; decoder epochs (stop): {runs}", error)
        values: list[tuple[str, float, str]] = [(q.raw, self.raw, noted)]
        if q is Quantity.SUFFICIENCY:
            values.append((H_Y, self.entropy, error))
        if q is Quantity.MINIMALITY:
            for j, head in enumerate(self.heads):
                bits, entropy = digit_metrics(j)
                values += [(bits, head.bits, noted), (entropy, head.entropy, error)]
        values += [(epochs_metric(h.name), h.fit.epochs, _joined(h.fit.stop, error))
                   for h in self.heads]  # fmt: skip
        values.append((q, self.value, noted))
        if (gain := self.last_gain) is not None:
            values.append((q.last_gain, gain, noted))
        if (certified := self.certified) is not None:
            values.append((q.certified, float(certified), noted))
        if self.monte_carlo is not None:
            values += [(MC_MEAN, self.monte_carlo[0], noted), (MC_STD, self.monte_carlo[1], noted)]
        marked = {q, q.raw}
        out = [
            row(epoch, split, layer, metric, v, note, family=family,
                saturated=self.saturated if metric in marked else None)
            for metric, v, note in values
        ]  # fmt: skip
        for budget, bits in sorted(self.curve.items()):
            stopped = [f"{h.name} at {h.fit.epochs}" for h in self.heads if h.fit.epochs < budget]
            carried = f"carried from before the budget: {', '.join(stopped)}" if stopped else ""
            out.append(row(epoch, split, layer, q.at_budget, bits, _joined(carried, error),
                           family=family, budget=budget))  # fmt: skip
        return out


@dataclass(frozen=True)
class Decoders:
    """How a measurement's decoders ran: their configuration (`DecoderConfig` as plain data),
    the batching of their heads and their compute (precision, memory format, compile)."""

    config: dict[str, Any]
    batching: str
    compute: str


@dataclass(frozen=True)
class Placement:
    """Where a Ray task measured: its node, device (with a note when it is not the one asked
    for) and placement group."""

    node: str
    device: str
    device_note: str
    placement_group: str


@dataclass(frozen=True)
class VInfoResult:
    """One (layer, split) 𝒱-information measurement. A measurement that failed before any
    decoder trained has no terms, only its error ("" when nothing went wrong)."""

    terms: dict[Quantity, Term] = field(default_factory=dict)
    num_digits: int = 0
    clipped: bool = False
    decoders: Decoders | None = None
    error: str = ""
    placement: Placement | None = None
    # The trained decoders (name → tensors, per fit) for the next measurement's warm start:
    # never written to the history; the trial checkpoint keeps the latest (`training.Run`).
    decoder_state: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def failed(cls, error: str) -> VInfoResult:
        return cls(error=error)

    def value(self, quantity: Quantity) -> float:
        """A term's reported value; NaN where it was not measured."""
        term = self.terms.get(quantity)
        return math.nan if term is None else term.value

    def to_json(self) -> dict[str, Any]:
        return {
            "terms": {q.value: term.to_json() for q, term in self.terms.items()},
            NUM_DIGITS: self.num_digits, CLIPPED: self.clipped,
            "decoders": None if self.decoders is None else vars(self.decoders),
            "error": self.error,
            "placement": None if self.placement is None else vars(self.placement),
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VInfoResult:
        if "terms" not in data:
            return _from_flat(data)
        decoders, placement = data["decoders"], data["placement"]
        return cls(
            {Quantity(q): Term.from_json(Quantity(q), t) for q, t in data["terms"].items()},
            data[NUM_DIGITS], data[CLIPPED], decoders and Decoders(**decoders), data["error"],
            placement and Placement(**placement),
        )  # fmt: skip

    def rows(self, key: MeasurementKey) -> list[Row]:
        """Every number of the measurement (see `Term.rows`); a headline quantity that was not
        measured is a NaN row. A failure's message follows "error:" on every row."""
        epoch, split, layer, family = key
        error = f"error: {self.error}" if self.error else ""

        def plain(metric: str, value: float) -> Row:
            return row(epoch, split, layer, metric, value, error, family=family)

        if not self.terms:
            return [plain(q, math.nan) for q in HEADLINE]
        out: list[Row] = []
        for term in self.terms.values():
            out += term.rows(key, error)
        return [*out, plain(NUM_DIGITS, self.num_digits), plain(CLIPPED, self.clipped)]


def _from_flat(values: dict[str, Any]) -> VInfoResult:
    """A measurement as histories before these types held it: one flat dictionary of
    `<quantity>_raw`, `<head>_epochs`, `<quantity>@<budget>`, … (read, never written)."""
    num_digits = int(values.get(NUM_DIGITS) or 0)
    config = ast.literal_eval(values["decoder_config"]) if "decoder_config" in values else {}
    nan = math.nan

    def head(name: str, entropy: str | None, bits: str) -> Head:
        fit = HeadFit(values[epochs_metric(name)], Stop(values[f"{name}_stop"]), nan)
        return Head(name, fit, nan if entropy is None else values[entropy], values[bits])

    heads = {  # (decoder, the key of its entropy, the key of its bits)
        Quantity.SUFFICIENCY: [(SUFF_HEAD, H_Y, Quantity.SUFFICIENCY.raw)],
        Quantity.MINIMALITY: [
            (digit_head(j), digit_metrics(j)[1], digit_metrics(j)[0]) for j in range(num_digits)
        ],
        Quantity.HELD_OUT: [(HELD_OUT_HEAD, None, Quantity.HELD_OUT.raw)],
    }
    protocol = {Quantity.SUFFICIENCY: "suff_protocol", Quantity.MINIMALITY: "min_protocol",
                Quantity.HELD_OUT: "held_out_protocol"}  # fmt: skip
    budgets = range(1, config.get("max_epochs", 0) + 1)
    terms = {}
    for q in Quantity:
        if q.raw not in values:
            continue
        mc = (values[MC_MEAN], values[MC_STD]) if MC_MEAN in values else None
        terms[q] = Term(
            q, values[q], values[q.raw], values[protocol[q]],
            tuple(head(*h) for h in heads[q]),
            {b: values[f"{q}@{b}"] for b in budgets if f"{q}@{b}" in values},
            mc if q is Quantity.MINIMALITY else None,
        )  # fmt: skip
    decoders = config and Decoders(config, values["decoder_batching"], values["decoder_compute"])
    placed = [values.get(f.name) for f in fields(Placement)]
    return VInfoResult(
        terms, num_digits, bool(values.get(CLIPPED, False)), decoders or None,
        values.get("error", ""), None if None in placed else Placement(*placed),
    )  # fmt: skip


# ---------------------------------------------------------------------------------- epochs


VINFO_BY_FAMILY = "vinfo_families"  # the history's key of an epoch's measurements


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: the stopping loss (nats), both splits measured at the final weights (None
    once the loss diverged: there is nothing left to measure), why training stopped (None
    while it goes on), the 𝒱-information measurements made, by (layer, split, family), and the
    baseline generalisation measures (value, note), measured where training stops."""

    epoch: int
    train_step_loss: float
    train: CollapseReport | None
    test: CollapseReport | None
    stop_reason: Stop | None
    vinfo: dict[VInfoKey, VInfoResult] = field(default_factory=dict)
    baselines: dict[Baseline, tuple[float, str]] = field(default_factory=dict)

    def reports(self) -> Iterator[tuple[str, CollapseReport]]:
        """(split, report) of each split measured."""
        for split, report in zip(SPLITS, (self.train, self.test), strict=True):
            if report is not None:
                yield split, report

    def to_json(self) -> dict[str, Any]:
        """One row of the history file: plain JSON, NaN allowed."""
        vinfo: dict[str, dict[str, dict[str, Any]]] = {}  # family → split → layer → result
        for (layer, split, family), result in self.vinfo.items():
            vinfo.setdefault(family, {}).setdefault(split, {})[str(layer)] = result.to_json()
        return {
            "epoch": self.epoch, "train_step_loss": self.train_step_loss,
            "stop_reason": self.stop_reason and self.stop_reason.value,
            "splits": {split: report.to_json() for split, report in self.reports()},
            VINFO_BY_FAMILY: vinfo,
            "baselines": {name: list(measured) for name, measured in self.baselines.items()},
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EpochRecord:
        splits = {s: CollapseReport.from_json(r) for s, r in data["splits"].items()}
        reason = data["stop_reason"]
        # written before families: one family's split → layer → result, under "vinfo"
        families = data.get(VINFO_BY_FAMILY) or {NETWORK: data.get("vinfo", {})}
        vinfo = {
            (int(layer), split, family): VInfoResult.from_json(values)
            for family, splits in families.items()
            for split, layers in splits.items()
            for layer, values in layers.items()
        }
        return cls(
            data["epoch"], data["train_step_loss"], splits.get("train"), splits.get("test"),
            Stop(reason) if reason else None, dict(sorted(vinfo.items())),
            {Baseline(k): (v, note) for k, (v, note) in data.get("baselines", {}).items()},
        )  # fmt: skip

    def rows(self) -> list[Row]:
        """The epoch as tidy rows (see COLUMNS); the step loss's note is why training stopped."""
        e = self.epoch
        out = [row(e, "train", None, TRAIN_STEP_LOSS, self.train_step_loss, self.stop_reason or "")]
        for split, report in self.reports():
            out += report.rows(e, split)
        for (layer, split, family), result in self.vinfo.items():
            out += result.rows((e, split, layer, family))
        out += [row(e, "train", None, name, v, note) for name, (v, note) in self.baselines.items()]
        return out
