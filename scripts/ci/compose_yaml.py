"""Loads a compose file with the merge tags an overlay may use (!reset,
!override), which PyYAML's safe loader refuses. Imported by the checks in
scripts/ci that read compose.yaml and deploy/compose/*.yaml."""
import yaml


class ComposeLoader(yaml.SafeLoader):
    """SafeLoader plus the compose merge tags, read as their plain value."""


def _plain(loader, node):
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    return loader.construct_scalar(node)


for _tag in ("!reset", "!override"):
    ComposeLoader.add_constructor(_tag, _plain)


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=ComposeLoader)
