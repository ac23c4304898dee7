# node-gyp build of the same sources as CMakeLists.txt, for tools that drive node-gyp
# (electron-rebuild, prebuildify). LibTorch is found by scripts/libtorch.mjs exactly as for
# cmake-js. CPU only: CUDA kernels (native/**/*.cu) need the CMake build (`npm run build`).
{
  "targets": [
    {
      "target_name": "pneumo_native",
      "sources": ["<!@(node scripts/libtorch.mjs --sources)"],
      "include_dirs": [
        "<!(node scripts/libtorch.mjs --node-addon-api)",
        "<!@(node scripts/libtorch.mjs --include-dirs)"
      ],
      "libraries": ["<!@(node scripts/libtorch.mjs --gyp-libraries)"],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "PN_VERSION=\"<!(node -p \"require('./package.json').version\")\"",
        "_GLIBCXX_USE_CXX11_ABI=<!(node scripts/libtorch.mjs --cxx-abi)",
        "<!@(node scripts/libtorch.mjs --gyp-defines)"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++14", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O3", "-fopenmp", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "ldflags": ["-fopenmp"]
    }
  ]
}
