"""Byte counts in words."""


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KB'."""
    for unit in ('B', 'KB', 'MB', 'GB', 'TB'):
        if n < 1024 or unit == 'TB':
            return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1024
