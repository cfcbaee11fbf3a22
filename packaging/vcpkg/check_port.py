#!/usr/bin/env python3
"""Checks the vcpkg port in packaging/vcpkg/ports/bulwark without vcpkg (not installable here).

1. vcpkg.json against the manifest rules vcpkg and the curated registry's review apply: strict
   JSON, known fields, the port name and feature names as vcpkg identifiers, exactly one version
   field (vcpkg's relaxed version pattern) equal to project(VERSION) in CMakeLists.txt, dependency
   objects and names (each a port that exists in the registry, with the CMake names bulwark's
   package looks for), self-dependencies naming real features, default-features, license as an
   SPDX expression, canonical ordering (what `vcpkg format-manifest` writes).
2. No download at configure time: the portfile and the project's CMake files.
3. The portfile's install steps (vcpkg_shim.cmake emulates vcpkg_check_features,
   vcpkg_cmake_configure/install, vcpkg_cmake_config_fixup, vcpkg_fixup_pkgconfig,
   vcpkg_install_copyright) for the core alone and for every feature, then vcpkg's post-build
   checks (nothing under lib/, debug/ or bin/ for a header-only port, usage and copyright in
   share/bulwark, no absolute build path in the installed files), then a project configured
   against the installed tree with find_package(bulwark COMPONENTS <features>) and each target
   the usage file names (CMake checks at generate time that each target and include path exists).

A missing license (no LICENSE file, "license": null) is printed as a review blocker; with
--strict it fails the check.
    packaging/vcpkg/check_port.py [--strict]
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PORT_DIR = os.path.join(ROOT, "packaging", "vcpkg", "ports", "bulwark")
SHIM = os.path.join(ROOT, "packaging", "vcpkg", "vcpkg_shim.cmake")

IDENTIFIER = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
RESERVED = {"prn", "aux", "nul", "con", "core", "default", "all"} | {f"lpt{i}" for i in range(10)} | {
    f"com{i}" for i in range(10)}
RELAXED_VERSION = re.compile(
    r"^\d+(\.\d+)*(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")
VERSION_FIELDS = ("version", "version-semver", "version-date", "version-string")
TOP_ORDER = ["name", *VERSION_FIELDS, "port-version", "maintainers", "summary", "description", "homepage",
             "documentation", "license", "supports", "dependencies", "default-features", "features"]
DEPENDENCY_KEYS = {"name", "host", "default-features", "features", "platform", "version>="}
FEATURE_KEYS = {"description", "dependencies", "supports", "license"}
SPDX_ID = r"(?:LicenseRef-[A-Za-z0-9.-]+|[A-Za-z0-9][A-Za-z0-9.-]*\+?)"
SPDX_EXPRESSION = re.compile(rf"^{SPDX_ID}(?: WITH [A-Za-z0-9.-]+)?(?: (?:AND|OR) {SPDX_ID}(?: WITH [A-Za-z0-9.-]+)?)*$")

# The registry's ports this port may depend on, and the CMake name each provides (what
# bulwark's package config looks for first; pkg-config is its fallback).
REGISTRY_PORTS = {
    "asio": "asio::asio (find_package(asio))",
    "boost-outcome": "Boost::headers (find_package(Boost))",
    "nlohmann-json": "nlohmann_json::nlohmann_json",
    "hiredis": "hiredis::hiredis",
    "librdkafka": "RdKafka::rdkafka (find_package(RdKafka))",
    "libmariadb": "unofficial::libmariadb (find_package(unofficial-libmariadb))",
    "vcpkg-cmake": "host tool",
    "vcpkg-cmake-config": "host tool",
}
# feature -> the registry port it must pull in (None: none), and the header it installs.
FEATURES = {
    "redis": ("hiredis", "bulwark/redis.hpp"),
    "mysql": ("libmariadb", "bulwark/mysql.hpp"),
    "kafka": ("librdkafka", "bulwark/kafka.hpp"),
    "hazelcast": (None, "bulwark/hazelcast.hpp"),
    "http": (None, "bulwark/http.hpp"),
}

errors = []
review = []


def error(message):
    errors.append(message)
    print(f"check_port: ERROR: {message}")


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    for k in set(keys):
        if keys.count(k) > 1:
            error(f"vcpkg.json: duplicate key '{k}'")
    return dict(pairs)


def project_version():
    text = open(os.path.join(ROOT, "CMakeLists.txt")).read()
    match = re.search(r"project\(bulwark\s+VERSION\s+([0-9.]+)", text)
    return match.group(1) if match else None


def check_dependency(where, dep, manifest):
    if isinstance(dep, str):
        dep = {"name": dep}
    if not isinstance(dep, dict) or "name" not in dep:
        error(f"{where}: a dependency is a port name or an object with 'name'")
        return None
    unknown = set(k for k in dep if not k.startswith("$")) - DEPENDENCY_KEYS
    if unknown:
        error(f"{where}: dependency '{dep['name']}' has unknown fields {sorted(unknown)}")
    name = dep["name"]
    if not IDENTIFIER.match(name):
        error(f"{where}: dependency name '{name}' is not a vcpkg identifier")
    if name == manifest.get("name"):
        if dep.get("default-features", True) is not False:
            error(f"{where}: a dependency on the port itself sets \"default-features\": false")
        for feature in dep.get("features", []):
            if feature not in manifest.get("features", {}):
                error(f"{where}: depends on the port's feature '{feature}', which does not exist")
    elif name not in REGISTRY_PORTS:
        error(f"{where}: '{name}' is not one of the registry ports this port is written against ({', '.join(REGISTRY_PORTS)})")
    if name in ("vcpkg-cmake", "vcpkg-cmake-config") and dep.get("host") is not True:
        error(f"{where}: '{name}' is a host dependency (\"host\": true)")
    for key in ("host", "default-features"):
        if key in dep and not isinstance(dep[key], bool):
            error(f"{where}: '{key}' of '{name}' is a boolean")
    return name


def check_sorted(where, deps):
    names = [d if isinstance(d, str) else d.get("name", "") for d in deps]
    if names != sorted(names):
        error(f"{where}: dependencies are not sorted by name (vcpkg format-manifest): {names}")


def check_manifest():
    path = os.path.join(PORT_DIR, "vcpkg.json")
    raw = open(path).read()
    try:
        manifest = json.loads(raw, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        error(f"vcpkg.json is not strict JSON: {e}")
        return None
    if not isinstance(manifest, dict):
        error("vcpkg.json: the top level is an object")
        return None
    keys = [k for k in manifest if not k.startswith("$")]
    unknown = set(keys) - set(TOP_ORDER)
    if unknown:
        error(f"vcpkg.json: unknown fields {sorted(unknown)}")
    if keys != sorted(keys, key=lambda k: TOP_ORDER.index(k) if k in TOP_ORDER else 99):
        error(f"vcpkg.json: fields out of vcpkg's canonical order: {keys}")
    name = manifest.get("name")
    if not isinstance(name, str) or not IDENTIFIER.match(name) or name in RESERVED:
        error(f"vcpkg.json: name '{name}' is not a vcpkg identifier (lowercase letters, digits, single dashes)")
    if name != os.path.basename(PORT_DIR):
        error(f"vcpkg.json: name '{name}' differs from the port directory '{os.path.basename(PORT_DIR)}'")
    present = [f for f in VERSION_FIELDS if f in manifest]
    if len(present) != 1:
        error(f"vcpkg.json: exactly one of {VERSION_FIELDS} (found {present})")
    elif present[0] != "version":
        error("vcpkg.json: a dotted numeric version uses the 'version' field")
    else:
        version = manifest["version"]
        if not isinstance(version, str) or not RELAXED_VERSION.match(version):
            error(f"vcpkg.json: version '{version}' does not match vcpkg's relaxed version pattern")
        if version != project_version():
            error(f"vcpkg.json: version {version} differs from project(VERSION {project_version()}) in CMakeLists.txt")
    if "port-version" in manifest and (not isinstance(manifest["port-version"], int) or manifest["port-version"] < 0):
        error("vcpkg.json: port-version is a non-negative integer")
    if not manifest.get("description"):
        error("vcpkg.json: a port has a description")
    license_ = manifest.get("license", "missing")
    if license_ is None or license_ == "missing":
        review.append("license: vcpkg.json has no SPDX license (the project has no LICENSE file yet)")
    elif not isinstance(license_, str) or not SPDX_EXPRESSION.match(license_):
        error(f"vcpkg.json: license '{license_}' is not an SPDX expression")
    deps = manifest.get("dependencies", [])
    core_names = {check_dependency("dependencies", d, manifest) for d in deps}
    check_sorted("dependencies", deps)
    for required in ("asio", "boost-outcome", "nlohmann-json", "vcpkg-cmake", "vcpkg-cmake-config"):
        if required not in core_names:
            error(f"vcpkg.json: the core needs '{required}'")
    features = manifest.get("features", {})
    if list(features) != sorted(features):
        error(f"vcpkg.json: features are not sorted (vcpkg format-manifest): {list(features)}")
    for feature, body in features.items():
        where = f"feature '{feature}'"
        if not IDENTIFIER.match(feature) or feature in RESERVED:
            error(f"{where}: not a vcpkg identifier")
        if feature not in FEATURES:
            error(f"{where}: not one of bulwark's components ({', '.join(FEATURES)})")
            continue
        unknown = set(k for k in body if not k.startswith("$")) - FEATURE_KEYS
        if unknown:
            error(f"{where}: unknown fields {sorted(unknown)}")
        if not body.get("description"):
            error(f"{where}: needs a description")
        fdeps = body.get("dependencies", [])
        names = {check_dependency(where, d, manifest) for d in fdeps}
        check_sorted(where, fdeps)
        port, _ = FEATURES[feature]
        if port and port not in names:
            error(f"{where}: must depend on '{port}'")
    for feature in FEATURES:
        if feature not in features:
            error(f"vcpkg.json: bulwark's component '{feature}' has no feature")
    for d in manifest.get("default-features", []):
        fname = d if isinstance(d, str) else d.get("name")
        if fname not in features:
            error(f"vcpkg.json: default feature '{fname}' does not exist")
    # hazelcast speaks HTTP: the feature must pull in the http feature.
    hz = [d for d in features.get("hazelcast", {}).get("dependencies", []) if isinstance(d, dict) and d.get("name") == name]
    if not hz or "http" not in hz[0].get("features", []):
        error("feature 'hazelcast': must depend on the port's own 'http' feature")
    return manifest


def check_no_downloads():
    download = re.compile(r"\b(FetchContent_\w+|ExternalProject_Add|file\s*\(\s*DOWNLOAD|vcpkg_download_distfile)\b")
    files = [os.path.join(PORT_DIR, "portfile.cmake"), os.path.join(ROOT, "CMakeLists.txt")]
    for base in ("cmake", "backends"):
        for dirpath, _, names in os.walk(os.path.join(ROOT, base)):
            files += [os.path.join(dirpath, n) for n in names if n.endswith((".cmake", ".txt", ".in"))]
    for f in files:
        for number, line in enumerate(open(f), 1):
            if download.search(line.split("#", 1)[0]):
                error(f"{os.path.relpath(f, ROOT)}:{number}: downloads at configure time: {line.strip()}")
    portfile = open(os.path.join(PORT_DIR, "portfile.cmake")).read()
    for call in ("vcpkg_cmake_configure", "vcpkg_cmake_install", "vcpkg_cmake_config_fixup", "vcpkg_install_copyright"):
        if call + "(" not in portfile:
            error(f"portfile.cmake: no {call}()")
    if not os.path.exists(os.path.join(PORT_DIR, "usage")):
        error("the port has no usage file")
        return
    # Each feature switches an option() the project defines (CMake only warns about an unknown -D).
    cmakelists = open(os.path.join(ROOT, "CMakeLists.txt")).read()
    block = re.search(r"vcpkg_check_features\((.*?)\)", portfile, re.S)
    pairs = re.findall(r"^\s*([a-z0-9-]+)\s+([A-Z0-9_]+)\s*$", block.group(1), re.M) if block else []
    if not pairs:
        error("portfile.cmake: no vcpkg_check_features(... FEATURES <feature> <option> ...)")
    for feature, option in pairs:
        if not re.search(rf"^option\({option}\s", cmakelists, re.M):
            error(f"portfile.cmake: feature '{feature}' switches {option}, which CMakeLists.txt does not define")
    # Every target the usage file names is one the package can provide.
    for target in sorted(set(re.findall(r"\bbulwark::[A-Za-z_]+", open(os.path.join(PORT_DIR, "usage")).read()))):
        if target.split("::")[1] not in ["core", *FEATURES]:
            error(f"usage names {target}, which no feature provides")


def run_portfile(manifest, features, work):
    packages = os.path.join(work, "packages", "bulwark_x64-linux")
    review_file = os.path.join(work, "review.txt")
    cmd = ["cmake", f"-DPORT_DIR={PORT_DIR}", "-DPORT=bulwark", f"-DVERSION={manifest['version']}",
           f"-DFEATURES={';'.join(['core'] + features)}",
           f"-DMANIFEST_FEATURES={';'.join(manifest.get('features', {}))}",
           f"-DCURRENT_PACKAGES_DIR={packages}", f"-DCURRENT_BUILDTREES_DIR={os.path.join(work, 'buildtrees')}",
           f"-DREVIEW_FILE={review_file}", "-P", SHIM]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        error(f"portfile.cmake failed for features {features or ['core']}:\n{result.stdout}{result.stderr}")
        return None
    for line in open(review_file).read().splitlines():
        if line not in review:
            review.append(line)
    return packages


def post_build_checks(packages, features, work):
    label = ",".join(features) or "core"
    for forbidden in ("lib", "debug", "bin"):
        if os.path.exists(os.path.join(packages, forbidden)):
            error(f"[{label}] a header-only port leaves no {forbidden}/ (found {forbidden}/: {os.listdir(os.path.join(packages, forbidden))})")
    share = os.path.join(packages, "share", "bulwark")
    for f in ("bulwark-config.cmake", "bulwark-config-version.cmake", "bulwark-targets.cmake", "usage"):
        if not os.path.exists(os.path.join(share, f)):
            error(f"[{label}] share/bulwark/{f} missing")
    if not os.path.exists(os.path.join(packages, "include", "bulwark", "result.hpp")):
        error(f"[{label}] the core's headers are not in include/bulwark")
    for feature, (_, header) in FEATURES.items():
        if feature in features and not os.path.exists(os.path.join(packages, "include", header)):
            error(f"[{label}] feature {feature}: include/{header} missing")
        component_targets = os.path.join(share, f"bulwark-{feature}-targets.cmake")
        if feature not in ("http",) and (feature in features) != os.path.exists(component_targets):
            error(f"[{label}] feature {feature}: bulwark-{feature}-targets.cmake {'missing' if feature in features else 'installed without the feature'}")
    for dirpath, _, names in os.walk(packages):
        for n in names:
            path = os.path.join(dirpath, n)
            if n.endswith((".cmake", ".pc")) and (work in open(path).read() or ROOT in open(path).read()):
                error(f"[{label}] {os.path.relpath(path, packages)} holds an absolute build or source path")
    main_targets = os.path.join(share, "bulwark-targets.cmake")
    if os.path.exists(main_targets):
        has_http = "add_library(bulwark::http " in open(main_targets).read()
        if has_http != ("http" in features):
            error(f"[{label}] bulwark::http {'installed without' if has_http else 'missing with'} the http feature")
    pc = os.path.join(packages, "share", "pkgconfig", "bulwark.pc")
    if os.path.exists(pc):
        version = re.search(r"^Version: (.*)$", open(pc).read(), re.M)
        if not version or version.group(1) != project_version():
            error(f"[{label}] bulwark.pc's Version is not project(VERSION)")
    else:
        error(f"[{label}] share/pkgconfig/bulwark.pc missing")


def consume(packages, features, work):
    """find_package(bulwark COMPONENTS features) against the installed tree, linking every target
    the usage file names: configure and generate (CMake errors on a missing target, component,
    or include directory of an imported target)."""
    label = ",".join(features) or "core"
    usage = open(os.path.join(PORT_DIR, "usage")).read()
    targets = sorted(set(re.findall(r"\bbulwark::[a-z]+\b", usage)))
    wanted = [t for t in targets if t == "bulwark::core" or t.split("::")[1] in features]
    src = os.path.join(work, f"consumer-{label}")
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, "CMakeLists.txt"), "w") as f:
        f.write("cmake_minimum_required(VERSION 3.25)\nproject(port_consumer LANGUAGES CXX)\n"
                f"find_package(bulwark {project_version()} CONFIG REQUIRED COMPONENTS {' '.join(features)})\n"
                "add_executable(consumer main.cpp)\n"
                f"target_link_libraries(consumer PRIVATE {' '.join(wanted)})\n")
    with open(os.path.join(src, "main.cpp"), "w") as f:
        f.write("int main() { return 0; }\n")
    result = subprocess.run(["cmake", "-S", src, "-B", os.path.join(src, "build"), "-G", "Ninja",
                             f"-DCMAKE_PREFIX_PATH={packages}"], capture_output=True, text=True)
    if result.returncode != 0:
        error(f"[{label}] find_package(bulwark) against the port's install failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
        return
    cache = open(os.path.join(src, "build", "CMakeCache.txt")).read()
    if f"bulwark_DIR:PATH={os.path.join(packages, 'share', 'bulwark')}" not in cache:
        error(f"[{label}] find_package(bulwark) did not use the port's share/bulwark")
    print(f"check_port: [{label}] portfile install, post-build checks and find_package(bulwark COMPONENTS {' '.join(features)}) with {' '.join(wanted)} ok")


def main():
    strict = "--strict" in sys.argv[1:]
    manifest = check_manifest()
    check_no_downloads()
    if manifest and not errors:
        work = tempfile.mkdtemp(prefix="bulwark-port-")
        try:
            for features in ([], sorted(FEATURES)):
                packages = run_portfile(manifest, features, work)
                if packages:
                    post_build_checks(packages, features, work)
                    consume(packages, features, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    for item in review:
        print(f"check_port: REVIEW BLOCKER: {item}")
    if errors or (strict and review):
        print(f"check_port: FAILED ({len(errors)} errors, {len(review)} review blockers)")
        return 1
    print(f"check_port: ok ({len(review)} review blockers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
