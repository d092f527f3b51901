"""The codebase's shape: no module imports a layer above its own, the README stays short, and
every link of the README and docs/ resolves (a file, and a heading for an anchor)."""
import ast
import glob
import os
import re

import pytest

from conftest import REPO

# Each package and what it may import from the project (README, Layout): data and models on
# utils, running models over queries and training on those, the viewer on all of them.
ALLOWED = {
    'utils': set(),
    'datasets': {'utils'},
    'models': {'utils'},
    'inference': {'utils', 'models', 'datasets'},
    'training': {'utils', 'models', 'datasets'},
    'webviewer': {'utils', 'models', 'datasets', 'inference'},
}
README_MAX_LINES = 300


def project_imports(path):
    """The project packages a module imports (absolute imports only: relative ones stay in
    their package)."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module]
        else:
            continue
        found |= {n.split('.')[0] for n in names if n.split('.')[0] in ALLOWED}
    return found


@pytest.mark.parametrize('package', sorted(ALLOWED))
def test_no_package_imports_a_layer_above_its_own(package):
    for path in glob.glob(os.path.join(REPO, package, '**', '*.py'), recursive=True):
        above = project_imports(path) - ALLOWED[package] - {package}
        assert not above, f"{os.path.relpath(path, REPO)} imports {sorted(above)}"


def slug(heading):
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


def anchors(path):
    with open(path) as f:
        return {slug(line.lstrip('#')) for line in f if line.startswith('#')}


def markdown_files():
    return [os.path.join(REPO, 'README.md')] + sorted(glob.glob(os.path.join(REPO, 'docs', '*.md')))


def test_the_readme_is_short_and_says_no_test_counts():
    with open(os.path.join(REPO, 'README.md')) as f:
        text = f.read()
    assert text.count('\n') <= README_MAX_LINES
    assert not re.search(r'\d+ (passed|tests)\b', text)


@pytest.mark.parametrize('path', markdown_files(), ids=lambda p: os.path.relpath(p, REPO))
def test_every_link_resolves(path):
    text = open(path).read()
    links = re.findall(r'\]\(([^)\s]+)\)', text)
    assert links or path.endswith('.md')
    for link in links:
        if re.match(r'[a-z]+:', link):
            continue  # a web address
        target, _, anchor = link.partition('#')
        file = os.path.normpath(os.path.join(os.path.dirname(path), target)) if target else path
        assert os.path.exists(file), f"{os.path.relpath(path, REPO)}: {link} is not a file"
        if anchor:
            assert anchor in anchors(file), \
                f"{os.path.relpath(path, REPO)}: {link} names no heading of {target or 'itself'}"


def test_every_doc_is_linked_from_the_readme():
    text = open(os.path.join(REPO, 'README.md')).read()
    for path in glob.glob(os.path.join(REPO, 'docs', '*.md')):
        assert f'docs/{os.path.basename(path)}' in text, f"{path} is not linked from README.md"
