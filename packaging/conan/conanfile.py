"""conan 2 recipe for bulwark: the header-only core plus the backends a user picks by option.

    conan create packaging/conan -s compiler.cppstd=20 -o "bulwark/*:with_redis=True"

Each option installs one find_package(bulwark) component and requires only that backend's client
library. The package ships bulwark's own CMake package (lib/cmake/bulwark; cmake_find_mode
"none"), so a conan user's find_package(bulwark COMPONENTS ...) runs the same config file, and
finds the dependencies through the same logic, as a user of a system install.
"""
import os
import re

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, load

required_conan_version = ">=2.0"

# option -> (CMake switch, the requirement it adds or None)
BACKENDS = {
    "with_redis": ("BULWARK_WITH_REDIS", "hiredis/[>=0.14 <2]"),
    "with_mysql": ("BULWARK_WITH_MYSQL", "mariadb-connector-c/[>=3.1 <4]"),
    "with_kafka": ("BULWARK_WITH_KAFKA", "librdkafka/[>=2.0 <3]"),
    "with_hazelcast": ("BULWARK_WITH_HAZELCAST", None),
    "with_http": ("BULWARK_WITH_HTTP", None),
}


class BulwarkConan(ConanFile):
    name = "bulwark"
    description = ("Header-only C++20 library for data services that keep answering when their "
                   "backends do not (Asio, Boost.Outcome; MySQL, Redis, Kafka, Hazelcast adapters)")
    license = "Apache-2.0"
    topics = ("resilience", "asio", "coroutines", "redis", "mysql", "kafka", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    options = {name: [True, False] for name in BACKENDS}
    default_options = {"with_redis": False, "with_mysql": False, "with_kafka": False,
                       "with_hazelcast": False, "with_http": True}
    no_copy_source = True

    @property
    def _repo_root(self):
        return os.path.join(self.recipe_folder, "..", "..")

    def set_version(self):
        # The version is written once, in project(VERSION) of the top-level CMakeLists.txt.
        cmakelists = load(self, os.path.join(self._repo_root, "CMakeLists.txt"))
        match = re.search(r"project\(bulwark\s+VERSION\s+([0-9.]+)", cmakelists)
        if not match:
            raise ConanInvalidConfiguration("no project(bulwark VERSION x.y.z) in CMakeLists.txt")
        self.version = match.group(1)

    def export_sources(self):
        root = self._repo_root
        dst = self.export_sources_folder
        copy(self, "CMakeLists.txt", root, dst)
        copy(self, "LICENSE*", root, dst)
        copy(self, "*", os.path.join(root, "cmake"), os.path.join(dst, "cmake"))
        copy(self, "*", os.path.join(root, "include"), os.path.join(dst, "include"))
        copy(self, "*", os.path.join(root, "backends"), os.path.join(dst, "backends"))

    def layout(self):
        cmake_layout(self, src_folder=".")

    def requirements(self):
        # Headers of every requirement are part of bulwark's public headers.
        traits = {"transitive_headers": True, "transitive_libs": True}
        self.requires("asio/[>=1.22 <2]", **traits)
        self.requires("boost/[>=1.74 <2]", **traits)  # Boost.Outcome, header-only
        self.requires("nlohmann_json/[>=3.10 <4]", **traits)
        for option, (_, requirement) in BACKENDS.items():
            if requirement and self.options.get_safe(option):
                self.requires(requirement, **traits)

    def package_id(self):
        # Header-only: no binary differs by compiler, architecture or build type, nor by the
        # dependencies' binaries. The options stay in the id: each installs other components.
        self.info.settings.clear()
        self.info.requires.clear()

    def validate(self):
        if self.settings.os == "Windows":
            raise ConanInvalidConfiguration("bulwark uses POSIX descriptors and signals: not on Windows")
        if self.settings.get_safe("compiler.cppstd"):
            check_min_cppstd(self, 20)
        if self.options.with_hazelcast and not self.options.with_http:
            raise ConanInvalidConfiguration("bulwark:with_hazelcast needs bulwark:with_http (the backend speaks HTTP)")

    def generate(self):
        toolchain = CMakeToolchain(self)
        for switch in (
            "BULWARK_BUILD_TESTS", "BULWARK_BUILD_EXAMPLES", "BULWARK_BUILD_BENCHMARKS", "BULWARK_BUILD_LOADGEN"
        ):
            toolchain.cache_variables[switch] = False
        for option, (switch, _) in BACKENDS.items():
            toolchain.cache_variables[switch] = bool(self.options.get_safe(option))
        toolchain.generate()
        CMakeDeps(self).generate()

    def build(self):
        # Nothing to compile; configuring checks the dependencies are found as a user's build would.
        CMake(self).configure()

    def package(self):
        copy(self, "LICENSE*", self.source_folder, os.path.join(self.package_folder, "licenses"))
        CMake(self).install()

    def package_info(self):
        # find_package(bulwark) uses the package's own config: same targets, same component logic.
        # CMakeToolchain puts the builddirs in CMAKE_PREFIX_PATH; with components, conan reads
        # them from the components (core's, below), not from the root cpp_info.
        self.cpp_info.set_property("cmake_find_mode", "none")
        self.cpp_info.set_property("pkg_config_name", "bulwark")
        # The components, for the other generators (PkgConfigDeps, ...) and conan's graph.
        core = self.cpp_info.components["core"]
        core.requires = ["asio::asio", "boost::headers", "nlohmann_json::nlohmann_json"]
        core.defines = ["ASIO_NO_DEPRECATED"]
        core.system_libs = ["pthread"]
        core.bindirs = []
        core.builddirs = [os.path.join("lib", "cmake", "bulwark")]
        core.libdirs = []
        links = {"with_redis": ["hiredis::hiredis"],
                 "with_mysql": ["mariadb-connector-c::mariadb-connector-c"],
                 "with_kafka": ["librdkafka::rdkafka"],
                 "with_hazelcast": ["http"],
                 "with_http": []}
        for option, requires in links.items():
            if not self.options.get_safe(option):
                continue
            component = self.cpp_info.components[option[len("with_"):]]
            component.requires = ["core"] + requires
            component.bindirs = []
            component.libdirs = []
