"""Stand-in for a conan central index package, wrapping the library Debian installed.

conan's documented pattern for system packages (system_requirements() with the Apt helper in
check mode, PkgConfig filling cpp_info with is_system=True, package_id() cleared), one recipe for
all of bulwark's dependencies: `conan create . --name hiredis --version 0.14.1` and so on (test.sh
passes the version Debian installed). Each exposes the CMake file and target names of the central
index's package (hiredis::hiredis, RdKafka::rdkafka, ...), so a consumer's find_package calls are
the same ones they would be with the real packages, and no .pc file of the system is involved.
"""
from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.gnu import PkgConfig
from conan.tools.system.package_manager import Apt

required_conan_version = ">=2.0"

# name -> the Debian package, its pkg-config module (None: headers in /usr/include only), the
# central index's cmake_file_name and targets (a dict: component -> target, for packages whose
# consumers name a component).
WRAPPED = {
    "asio": ("libasio-dev", None, "asio", "asio::asio"),
    "boost": ("libboost-dev", None, "Boost", {"headers": "Boost::headers", "boost": "Boost::boost"}),
    "nlohmann_json": ("nlohmann-json3-dev", None, "nlohmann_json", "nlohmann_json::nlohmann_json"),
    "hiredis": ("libhiredis-dev", "hiredis", "hiredis", "hiredis::hiredis"),
    "librdkafka": ("librdkafka-dev", "rdkafka", "RdKafka", {"rdkafka": "RdKafka::rdkafka"}),
    "mariadb-connector-c": ("libmariadb-dev", "libmariadb", "mariadb-connector-c",
                            "mariadb-connector-c::mariadb-connector-c"),
}


class SystemPackageConan(ConanFile):
    description = "Stand-in wrapping the system's (Debian's) package of a conan central index library"
    settings = "os", "arch", "compiler", "build_type"

    @property
    def _wrapped(self):
        if self.name not in WRAPPED:
            raise ConanInvalidConfiguration(f"no system stand-in for '{self.name}' (known: {', '.join(WRAPPED)})")
        return WRAPPED[self.name]

    def package_id(self):
        self.info.clear()

    def validate(self):
        if self.settings.os != "Linux":
            raise ConanInvalidConfiguration("the system stand-ins wrap Debian packages: Linux only")

    def system_requirements(self):
        # Check mode (conan's default for tools.system.package_manager:mode): fails with the
        # missing package's name rather than installing anything.
        Apt(self).install([self._wrapped[0]], check=True)

    def package_info(self):
        _, pc_module, file_name, targets = self._wrapped
        self.cpp_info.set_property("cmake_file_name", file_name)
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.includedirs = []  # /usr/include: the compiler's own search path
        components = targets if isinstance(targets, dict) else None
        if components is None:
            self.cpp_info.set_property("cmake_target_name", targets)
        infos = [self.cpp_info] if components is None else []
        for component, target in (components or {}).items():
            info = self.cpp_info.components[component]
            info.set_property("cmake_target_name", target)
            info.bindirs = []
            info.libdirs = []
            info.includedirs = []
            infos.append(info)
        if pc_module:
            for info in infos:
                PkgConfig(self, pc_module).fill_cpp_info(info, is_system=True)
                # Only the library's own subdirectory (e.g. /usr/include/mariadb) is kept:
                # /usr/include itself must stay the compiler's implicit directory.
                info.includedirs = [d for d in info.includedirs if d.rstrip("/") != "/usr/include"]
