{
  description = "pikaci demo inputs: tiny tools built without nixpkgs";

  # No inputs, so this builds on a machine that cannot fetch nixpkgs. The builder is the
  # host's /bin/sh, which needs `sandbox = false` (true on the pikaci testbed); with a
  # sandbox, pin nixpkgs and use `writeShellScriptBin` instead.
  outputs = { self }:
    let
      system = "x86_64-linux";
      tool = name: body: derivation {
        inherit name system;
        builder = "/bin/sh";
        args = [ "-c" ''
          /bin/mkdir -p $out/bin
          /bin/cat > $out/bin/${name} <<'SCRIPT'
          #!/bin/sh
          ${body}
          SCRIPT
          /bin/chmod +x $out/bin/${name}
        '' ];
      };
    in {
      packages.${system} = {
        tools = tool "pikaci-demo-hello" ''echo "hello from a Nix-built input: $0"'';
        default = self.packages.${system}.tools;
      };
    };
}
