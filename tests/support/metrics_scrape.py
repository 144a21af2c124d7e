"""Parse Prometheus text into ``{(sample name, sorted labels): value}`` for assertions.

Not a test module (no ``test_`` prefix): imported by the metrics tests.
"""

from prometheus_client.parser import text_string_to_metric_families


def parse_samples(text):
    """Every sample of the exposition C{text} (str), and the families' types by name."""
    samples, types = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, types


def value(samples, name, **labels):
    """The value of one sample; KeyError (naming what exists) if it is absent."""
    key = (name, tuple(sorted(labels.items())))
    if key not in samples:
        present = sorted(k for k in samples if k[0] == name)
        raise KeyError(f"no sample {key}; present: {present}")
    return samples[key]
