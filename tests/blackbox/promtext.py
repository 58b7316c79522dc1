"""A strict reader of keywardd's /metrics (the Prometheus text format 0.0.4),
shared by the black-box tests that read it.

parse() refuses what a scraper could misread or what the server never
writes: a line without its newline, a sample before its family's # TYPE, a
family split in two, a repeated series, a malformed label or value, and a
keyward_* sample whose first label is not node="<id>" or whose node differs
from the other samples' (one exposition is one node's, docs/api.md).
"""
import math
import re

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
SAMPLE_RE = re.compile(r"^(%s)(?:\{(.*)\})? (\S+)$" % NAME)
LABEL_RE = re.compile(r'(%s)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)' % LABEL)
HELP_RE = re.compile(r"^# HELP (%s) (.*)$" % NAME)
TYPE_RE = re.compile(r"^# TYPE (%s) (\S+)$" % NAME)


class Exposition:
    """The parsed text: samples in order as (name, labels dict, value), the
    families' types, and the one node id every keyward_* sample carries."""

    def __init__(self, samples, types, node):
        self.samples = samples
        self.types = types
        self.node = node

    def find(self, name, **labels):
        """The samples of name whose labels include labels (node aside)."""
        return [(n, l, v) for n, l, v in self.samples
                if n == name and all(l.get(k) == str(x) for k, x in labels.items())]

    def value(self, name, **labels):
        """The value of the one series name{node, **labels} (exactly those labels)."""
        want = dict(labels, node=self.node)
        got = [v for n, l, v in self.samples
               if n == name and l == {k: str(x) for k, x in want.items()}]
        assert len(got) == 1, "%s%r: %d series in /metrics" % (name, labels, len(got))
        return got[0]

    def has(self, name):
        return any(n == name for n, _, _ in self.samples)


def _labels(text, line):
    out = {}
    pos = 0
    while pos < len(text):
        m = LABEL_RE.match(text, pos)
        assert m, "malformed labels in %r" % line
        k, v = m.group(1), m.group(2)
        assert k not in out, "label %s twice in %r" % (k, line)
        out[k] = v.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        pos = m.end()
        assert m.group(3) == "," or pos == len(text), line
        assert not (m.group(3) == "," and pos == len(text)), "trailing comma in %r" % line
    return out


def _value(s, line):
    if s in ("+Inf", "-Inf", "NaN"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    assert re.match(r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$", s), "bad value in %r" % line
    v = float(s)
    assert math.isfinite(v), line
    return v


def _family(name, types):
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[:-len(suffix)]
        if name.endswith(suffix) and types.get(base) in ("histogram", "summary"):
            return base
    raise AssertionError("sample %s has no # TYPE before it" % name)


def parse(text, node=None):
    """Checks text strictly (see the top of this file); node, when given,
    is the id every sample must carry."""
    assert text.endswith("\n"), "the exposition does not end with a newline"
    samples, types, helps, seen, done = [], {}, set(), set(), set()
    current = None
    for line in text[:-1].split("\n"):
        assert line, "an empty line"
        if line.startswith("#"):
            m = TYPE_RE.match(line)
            if m:
                name, typ = m.groups()
                assert typ in TYPES and name not in types, line
                types[name] = typ
                continue
            m = HELP_RE.match(line)
            assert m, "a comment that is neither # HELP nor # TYPE: %r" % line
            assert m.group(1) not in helps, line
            helps.add(m.group(1))
            continue
        m = SAMPLE_RE.match(line)
        assert m, "malformed sample %r" % line
        name, labels, value = m.group(1), _labels(m.group(2) or "", line), _value(m.group(3), line)
        fam = _family(name, types)
        if fam != current:
            assert fam not in done, "family %s split in two" % fam
            if current is not None:
                done.add(current)
            current = fam
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, "series twice: %r" % line
        seen.add(key)
        if name.startswith("keyward_"):
            assert list(labels)[:1] == ["node"], "no node label first: %r" % line
            if node is None:
                node = labels["node"]
            assert labels["node"] == node, "two nodes in one exposition: %r" % line
        samples.append((name, labels, value))
    assert samples, "no samples"
    return Exposition(samples, types, node)


def value(text, name, **labels):
    """parse(text).value(name, **labels)."""
    return parse(text).value(name, **labels)
