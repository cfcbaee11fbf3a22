# Runs a port's portfile.cmake the way vcpkg would, without vcpkg (which cannot be installed here):
# the helpers the portfile calls are emulated with the same contracts, and each fails as vcpkg's
# would on a wrong path or name. Driven by check_port.py:
#   cmake -DPORT_DIR=... -DPORT=bulwark -DVERSION=0.1.0 -DFEATURES="core;redis" -DMANIFEST_FEATURES="..."
#         -DCURRENT_PACKAGES_DIR=... -DCURRENT_BUILDTREES_DIR=... -DREVIEW_FILE=... -P vcpkg_shim.cmake
cmake_minimum_required(VERSION 3.25)
set(TARGET_TRIPLET x64-linux)
set(VCPKG_TARGET_IS_LINUX ON)
set(CMAKE_FIND_PACKAGE_PREFER_CONFIG ON)
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}" "${CURRENT_BUILDTREES_DIR}")
file(MAKE_DIRECTORY "${CURRENT_PACKAGES_DIR}" "${CURRENT_BUILDTREES_DIR}")
file(WRITE "${REVIEW_FILE}" "")

function(shim_review message)
  file(APPEND "${REVIEW_FILE}" "${message}\n")
endfunction()

# vcpkg_check_features(OUT_FEATURE_OPTIONS var FEATURES <feature> <option>...)
function(vcpkg_check_features)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "OUT_FEATURE_OPTIONS" "FEATURES;INVERTED_FEATURES")
  list(LENGTH arg_FEATURES n)
  math(EXPR odd "${n} % 2")
  if(odd OR n EQUAL 0)
    message(FATAL_ERROR "vcpkg_check_features: FEATURES needs <feature> <option> pairs")
  endif()
  set(options)
  set(seen)
  math(EXPR last "${n} - 1")
  foreach(i RANGE 0 ${last} 2)
    math(EXPR j "${i} + 1")
    list(GET arg_FEATURES ${i} feature)
    list(GET arg_FEATURES ${j} option)
    if(NOT feature IN_LIST MANIFEST_FEATURES)
      message(FATAL_ERROR "vcpkg_check_features: '${feature}' is not a feature of vcpkg.json (${MANIFEST_FEATURES})")
    endif()
    list(APPEND seen ${feature})
    if(feature IN_LIST FEATURES)
      list(APPEND options "-D${option}=ON")
    else()
      list(APPEND options "-D${option}=OFF")
    endif()
  endforeach()
  foreach(feature IN LISTS MANIFEST_FEATURES)
    if(NOT feature IN_LIST seen)
      message(FATAL_ERROR "vcpkg_check_features: the manifest's feature '${feature}' maps to no CMake option")
    endif()
  endforeach()
  set(${arg_OUT_FEATURE_OPTIONS} "${options}" PARENT_SCOPE)
endfunction()

# vcpkg_cmake_configure(SOURCE_PATH path OPTIONS ...): the release configuration only
# (VCPKG_BUILD_TYPE release), with the variables vcpkg passes to every port.
function(vcpkg_cmake_configure)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "SOURCE_PATH" "OPTIONS;OPTIONS_RELEASE;OPTIONS_DEBUG")
  if(NOT EXISTS "${arg_SOURCE_PATH}/CMakeLists.txt")
    message(FATAL_ERROR "vcpkg_cmake_configure: no CMakeLists.txt in SOURCE_PATH '${arg_SOURCE_PATH}'")
  endif()
  if(NOT VCPKG_BUILD_TYPE STREQUAL "release")
    shim_review("portfile: a header-only port sets VCPKG_BUILD_TYPE release")
  endif()
  execute_process(
    COMMAND ${CMAKE_COMMAND} -S "${arg_SOURCE_PATH}" -B "${CURRENT_BUILDTREES_DIR}/${TARGET_TRIPLET}-rel" -G Ninja
            -DCMAKE_BUILD_TYPE=Release "-DCMAKE_INSTALL_PREFIX=${CURRENT_PACKAGES_DIR}"
            -DCMAKE_INSTALL_LIBDIR:STRING=lib -DCMAKE_INSTALL_BINDIR:STRING=bin
            -DFETCHCONTENT_FULLY_DISCONNECTED=ON -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON
            ${arg_OPTIONS} ${arg_OPTIONS_RELEASE}
    RESULT_VARIABLE rc OUTPUT_FILE "${CURRENT_BUILDTREES_DIR}/config-${TARGET_TRIPLET}-rel-out.log"
    ERROR_FILE "${CURRENT_BUILDTREES_DIR}/config-${TARGET_TRIPLET}-rel-err.log")
  if(rc)
    file(READ "${CURRENT_BUILDTREES_DIR}/config-${TARGET_TRIPLET}-rel-err.log" err)
    message(FATAL_ERROR "vcpkg_cmake_configure failed:\n${err}")
  endif()
  set_property(GLOBAL PROPERTY shim_configured ON)
endfunction()

function(vcpkg_cmake_install)
  get_property(configured GLOBAL PROPERTY shim_configured)
  if(NOT configured)
    message(FATAL_ERROR "vcpkg_cmake_install before vcpkg_cmake_configure")
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} --build "${CURRENT_BUILDTREES_DIR}/${TARGET_TRIPLET}-rel" --target install
                  RESULT_VARIABLE rc OUTPUT_QUIET)
  if(rc)
    message(FATAL_ERROR "vcpkg_cmake_install failed")
  endif()
endfunction()

# vcpkg_cmake_config_fixup(CONFIG_PATH p [PACKAGE_NAME n]): moves the CMake package to share/<n>
# and rewrites the files' way of finding the prefix (one directory less deep), as vcpkg does.
function(vcpkg_cmake_config_fixup)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "CONFIG_PATH;PACKAGE_NAME" "")
  if(NOT arg_PACKAGE_NAME)
    set(arg_PACKAGE_NAME ${PORT})
  endif()
  if(NOT arg_CONFIG_PATH)
    set(arg_CONFIG_PATH share/${arg_PACKAGE_NAME})
  endif()
  set(from "${CURRENT_PACKAGES_DIR}/${arg_CONFIG_PATH}")
  set(to "${CURRENT_PACKAGES_DIR}/share/${arg_PACKAGE_NAME}")
  if(NOT IS_DIRECTORY "${from}")
    message(FATAL_ERROR "vcpkg_cmake_config_fixup: '${from}' does not exist")
  endif()
  if(NOT from STREQUAL to)
    file(MAKE_DIRECTORY "${to}")
    file(GLOB files "${from}/*")
    file(COPY ${files} DESTINATION "${to}")
    file(REMOVE_RECURSE "${from}")
  endif()
  file(GLOB cmake_files "${to}/*.cmake")
  foreach(f IN LISTS cmake_files)
    file(READ "${f}" text)
    # configure_package_config_file's prefix: lib/cmake/<n> is three levels, share/<n> two.
    string(REGEX REPLACE "get_filename_component\\(PACKAGE_PREFIX_DIR \"\\\${CMAKE_CURRENT_LIST_DIR}/[./]*\" ABSOLUTE\\)"
           "get_filename_component(PACKAGE_PREFIX_DIR \"\${CMAKE_CURRENT_LIST_DIR}/../../\" ABSOLUTE)" text "${text}")
    # install(EXPORT)'s prefix: three get_filename_component(PATH) steps become two.
    string(REPLACE "get_filename_component(_IMPORT_PREFIX \"\${_IMPORT_PREFIX}\" PATH)\nget_filename_component(_IMPORT_PREFIX \"\${_IMPORT_PREFIX}\" PATH)\nget_filename_component(_IMPORT_PREFIX \"\${_IMPORT_PREFIX}\" PATH)"
           "get_filename_component(_IMPORT_PREFIX \"\${_IMPORT_PREFIX}\" PATH)\nget_filename_component(_IMPORT_PREFIX \"\${_IMPORT_PREFIX}\" PATH)" text "${text}")
    file(WRITE "${f}" "${text}")
  endforeach()
  # vcpkg removes the directories the move emptied.
  foreach(dir lib/cmake lib)
    file(GLOB left "${CURRENT_PACKAGES_DIR}/${dir}/*")
    if(IS_DIRECTORY "${CURRENT_PACKAGES_DIR}/${dir}" AND NOT left)
      file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/${dir}")
    endif()
  endforeach()
endfunction()

# vcpkg_fixup_pkgconfig(): every .pc file must sit in lib/pkgconfig or share/pkgconfig and
# locate its prefix relative to itself.
function(vcpkg_fixup_pkgconfig)
  file(GLOB_RECURSE pcs "${CURRENT_PACKAGES_DIR}/*.pc")
  foreach(pc IN LISTS pcs)
    file(RELATIVE_PATH rel "${CURRENT_PACKAGES_DIR}" "${pc}")
    if(NOT rel MATCHES "^(lib|share)/pkgconfig/[^/]+\\.pc$")
      message(FATAL_ERROR "vcpkg_fixup_pkgconfig: ${rel} is not in lib/pkgconfig or share/pkgconfig")
    endif()
    file(STRINGS "${pc}" prefix REGEX "^prefix=")
    if(NOT prefix MATCHES "^prefix=\\\${pcfiledir}")
      message(FATAL_ERROR "vcpkg_fixup_pkgconfig: ${rel} has an absolute prefix (${prefix})")
    endif()
  endforeach()
endfunction()

function(vcpkg_install_copyright)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "" "FILE_LIST")
  set(text "")
  foreach(f IN LISTS arg_FILE_LIST)
    if(NOT EXISTS "${f}")
      # vcpkg fails here; the checker reports it (a review blocker) and goes on, so that the rest
      # of the port is still checked while the project has no LICENSE file.
      shim_review("copyright: ${f} does not exist (vcpkg_install_copyright fails; the port cannot be submitted)")
      continue()
    endif()
    file(READ "${f}" part)
    string(APPEND text "${part}")
  endforeach()
  if(text)
    file(WRITE "${CURRENT_PACKAGES_DIR}/share/${PORT}/copyright" "${text}")
  endif()
endfunction()

foreach(forbidden vcpkg_download_distfile vcpkg_from_git vcpkg_from_gitlab vcpkg_from_bitbucket)
  # Not called by this overlay port; defined so that a call is reported rather than unknown.
  cmake_language(EVAL CODE "function(${forbidden})\n message(FATAL_ERROR \"${forbidden}: the checker runs offline\")\nendfunction()")
endforeach()

include("${PORT_DIR}/portfile.cmake")
message(STATUS "shim: portfile.cmake ran for features ${FEATURES}")
