#!/usr/bin/env python3
"""Prints the architecture figures quoted in closing notes: handler sizes,
database closures in the web layer, string comparisons of domain values,
stringly internal errors and same-shape code pairs. Run from the repository
root: `python3 tools/arch-figures.py`."""
import pathlib
import re
import subprocess

SRC = pathlib.Path("src")


def non_test(text):
    """The file without its `#[cfg(test)]` module."""
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def functions(path):
    """(name, lines) of every `fn` in a file, by brace matching."""
    lines = non_test(path.read_text()).splitlines()
    out = []
    i = 0
    while i < len(lines):
        m = re.match(r"\s*(pub(\([a-z]+\))? )?(async )?fn (\w+)", lines[i])
        if not m:
            i += 1
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            depth += lines[j].count("{") - lines[j].count("}")
            started = started or "{" in lines[j]
            if started and depth <= 0:
                break
            if not started and lines[j].rstrip().endswith(";"):
                break
            j += 1
        out.append((m.group(4), j - i + 1))
        i = j + 1 if started else i + 1
    return out


def handlers():
    rows = []
    for path in sorted((SRC / "web").rglob("*.rs")):
        text = non_test(path.read_text())
        for name, n in functions(path):
            if re.search(rf"pub async fn {name}\b", text):
                rows.append((n, f"{path.relative_to(SRC)}::{name}"))
    return sorted(rows, reverse=True)


def count(pattern, root, flags=0):
    total = 0
    for path in root.rglob("*.rs"):
        total += len(re.findall(pattern, non_test(path.read_text()), flags))
    return total


DOMAIN = r'"(active|expired|expiring_soon|revoked|rolled|api_key|access_token|refresh_token|client_secret|authorization_code|lkat|lkrt|lkcs|confidential|public|owner|admin|developer|viewer|support|invalid_grant|invalid_client|invalid_request|invalid_scope|unauthorized_client|unsupported_grant_type|access_denied|server_error|slow_down|reuse|oauth|key)"'
STRING_COMPARISONS = (
    rf"(==|!=)\s*{DOMAIN}|{DOMAIN}\s*(==|!=)|matches!\([^)]*{DOMAIN}|^\s*(Some\()?{DOMAIN}\)?\s*(\|\s*{DOMAIN}\s*)*=>"
)


def main():
    rows = handlers()
    print("largest handlers (lines):")
    for n, name in rows[:10]:
        print(f"  {n:4}  {name}")
    print(f"handlers over 30 lines: {sum(1 for n, _ in rows if n > 30)} of {len(rows)}")
    runs = count(r"\.run\(", SRC / "web")
    print(f"db.run in src/web: {runs}")
    print(f"string comparisons of domain values in src: {count(STRING_COMPARISONS, SRC, re.M)}")
    internal = count(r"Internal\((format!|e\.to_string|[a-z_]+\.to_string|\"|m\b|msg\b)", SRC)
    print(f"Internal(String) conversions in src: {internal}")
    dup = subprocess.run(
        ["duplicates", "--most", "200", "--seconds", "60"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    pairs = [line for line in dup if re.match(r"\s*D\d+ ", line) and "migrations/" not in line]
    print(f"same-shape pairs of 6+ lines outside migrations: {len(pairs)}")
    code = [p for p in pairs if "boilerplate" not in p and "tests/" not in p and "bench/" not in p]
    print(f"  of which in src/ and templates/, not boilerplate: {len(code)}")
    for line in code[:12]:
        print("  " + line.strip())


if __name__ == "__main__":
    main()
