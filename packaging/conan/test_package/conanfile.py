import os

from conan import ConanFile
from conan.tools.build import can_run
from conan.tools.cmake import CMake, cmake_layout


class BulwarkTestConan(ConanFile):
    settings = "os", "arch", "compiler", "build_type"
    generators = "CMakeDeps", "CMakeToolchain"

    def requirements(self):
        self.requires(self.tested_reference_str)

    def layout(self):
        cmake_layout(self)

    def build(self):
        # find_package(bulwark COMPONENTS ...) with every component the options installed.
        bulwark = self.dependencies["bulwark"]
        components = [c for c in ("redis", "mysql", "kafka", "hazelcast", "http")
                      if bulwark.options.get_safe(f"with_{c}")]
        cmake = CMake(self)
        cmake.configure(variables={"BULWARK_COMPONENTS": ";".join(components)})
        cmake.build()

    def test(self):
        if can_run(self):
            self.run(os.path.join(self.cpp.build.bindir, "consumer", "consumer"), env="conanrun")
