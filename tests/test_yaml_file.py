"""The one YAML reader (utils/yaml_file.py): bounded, no silent overwrite, numbers as written,
one-line errors naming the file; through load_config, --set and train_liif.py."""
import pytest

import train_liif
from utils.config import load_config, parse_override_value
from utils.yaml_file import MAX_DEPTH, parse_yaml


def write(tmp_path, text, name='c.yaml', encoding='utf-8'):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def test_numbers_as_a_reader_means_them_in_files_and_overrides(tmp_path):
    config = load_config(write(tmp_path, 'lr: 1e-4\nbetas: [9e-1, 0.999]\nx: 1.5e3\n'
                                         'y: 1.e-4\nname: 1e\n'))
    assert config == {'lr': 1e-4, 'betas': [0.9, 0.999], 'x': 1500.0, 'y': 1e-4, 'name': '1e'}
    assert parse_override_value('optimizer.args.betas=[9e-1,0.999]', '[9e-1,0.999]') == \
        [0.9, 0.999]


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path):
    path = write(tmp_path, 'eval_type: div2k-2\nepoch_max: 3\neval_type: div2k-4\n')
    with pytest.raises(ValueError, match=r"c\.yaml .*'eval_type' is given twice "
                                         r"\(lines 1 and 3\)"):
        load_config(path)


def test_an_alias_bomb_is_refused_before_it_is_built(tmp_path):
    bomb = 'a: &a ["lol", "lol"]\n' + ''.join(
        f'{chr(98 + i)}: &{chr(98 + i)} [' + ', '.join([f'*{chr(97 + i)}'] * 9) + ']\n'
        for i in range(9))  # 2 * 9^9 strings once expanded
    with pytest.raises(ValueError, match='aliases are expanded: refused'):
        load_config(write(tmp_path, bomb))
    assert parse_yaml('a: &x [1, 2]\nb: [*x, *x]', 's') == {'a': [1, 2], 'b': [[1, 2]] * 2}


def test_deep_nesting_is_refused(tmp_path):
    with pytest.raises(ValueError, match=f'nested deeper than {MAX_DEPTH} levels'):
        load_config(write(tmp_path, 'a: ' + '[' * 20000 + ']' * 20000))
    with pytest.raises(ValueError, match="override 'x=.*nested deeper"):
        parse_override_value('x=[[[', '[' * 20000 + ']' * 20000)


def test_a_file_not_in_utf8_is_named(tmp_path):
    path = write(tmp_path, 'name: caf\u00e9\n', encoding='latin-1')
    with pytest.raises(ValueError, match=r"config .*c\.yaml is not UTF-8 text"):
        load_config(path)


def test_train_liif_says_one_line_for_a_duplicate_key(tmp_path, capsys):
    path = write(tmp_path, 'epoch_max: 1\nepoch_max: 2\n')
    assert train_liif.main(['--config', path, '--save-dir', str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'epoch_max' is given twice" in err[0]
