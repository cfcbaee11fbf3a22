# Helpers for the project's own (non-installed) targets.

# bulwark_warnings(target): the warning set every project target builds with.
function(bulwark_warnings target)
  # GCC 12 warns about designated initializers that leave fields to their defaults, which is
  # how bulwark's option structs are meant to be written; every other -Wextra warning stays.
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-missing-field-initializers)
  if(BULWARK_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# bulwark_test_pch(target): the precompiled header shared by test executables.
function(bulwark_test_pch target)
  target_precompile_headers(${target} PRIVATE
    <asio.hpp> <gtest/gtest.h> <nlohmann/json.hpp> <boost/outcome/basic_result.hpp>
    <string> <vector> <map> <memory> <chrono> <optional>)
endfunction()

# bulwark_add_component(name DEPENDENCIES file LINK targets...): an INTERFACE target
# bulwark::<name> whose headers live in ${CMAKE_CURRENT_SOURCE_DIR}/include, installed as the
# find_package component <name>. `file` is a CMake script that finds the client library; it
# is included here and installed beside the package config.
function(bulwark_add_component name)
  cmake_parse_arguments(arg "" "DEPENDENCIES" "LINK" ${ARGN})
  if(arg_DEPENDENCIES)
    include(${arg_DEPENDENCIES})
  endif()
  add_library(bulwark_${name} INTERFACE)
  add_library(bulwark::${name} ALIAS bulwark_${name})
  set_target_properties(bulwark_${name} PROPERTIES EXPORT_NAME ${name})
  target_include_directories(bulwark_${name} INTERFACE
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(bulwark_${name} INTERFACE bulwark::core ${arg_LINK})
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/include)
    install(DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  endif()
  install(TARGETS bulwark_${name} EXPORT bulwark-${name}-targets)
  install(EXPORT bulwark-${name}-targets NAMESPACE bulwark:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/bulwark)
  if(arg_DEPENDENCIES)
    get_filename_component(dep_name ${arg_DEPENDENCIES} NAME)
    install(FILES ${arg_DEPENDENCIES} DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/bulwark
            RENAME bulwark-${name}-dependencies.cmake)
  endif()
endfunction()
