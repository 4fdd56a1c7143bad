//! The module graph of `src/` (docs/architecture.md, "Layers"): every reference from one
//! module to another through a `crate::`, `super::` or `self::` path, or through a module
//! a `use` brought in (in a `use`, in code, in a macro's arguments, in a serde attribute)
//! is an edge to the module that defines what it names (re-exports followed), except a
//! module's references to its own descendants (a module owns and presents its children).
//! Items and files under `#[cfg(test)]` are left out. The graph must
//! have no cycle, and no top-level module may reach a module of a higher layer than its
//! own. The edges that still break these rules are listed in `STILL_TO_REMOVE`, and the
//! list must be exact: a new break fails the test, and so does a listed one that is gone
//! (take it off the list).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The top-level modules of `src/`, lowest layer first: a module may use modules of its
/// own layer (without a cycle) and of the layers below it, never above.
const LAYERS: &[&[&str]] = &[
    &[
        "protocol",
        "seeded",
        "precise_timer",
        "timestamp",
        "signals",
        "output",
        "metrics",
        "listen",
        "share",
    ],
    &[
        "redact",
        "broker_uri",
        "events",
        "ledger",
        "message",
        "toxiproxy",
        "tls",
        "deadline",
    ],
    &["scenario"],
    &["amqp", "gates"],
    &["broker"],
    &["faults", "exit"],
    &["workload"],
    &["exporter", "workers"],
    &["report", "cli"],
    &["drive"],
    &["sweep"],
    &["commands"],
];

/// Edges (from, to) that break a rule and are known: none. An edge that must stay for a
/// while goes here with what will remove it, and the test fails once it is gone.
const STILL_TO_REMOVE: &[(&str, &str)] = &[];

/// A module path of the crate (`""` is the crate root, `"faults::runner"` a file).
type Module = String;

/// Every module file of `src/`, by its module path (`main.rs` is the binary, not a module).
fn module_files(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut folders = vec![src.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts == ["main"] {
                continue;
            }
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            found.insert(parts.join("::"), path);
        }
    }
    found
}

/// Whether `attrs` hold `#[cfg(test)]`.
fn test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Ident>()
                .is_ok_and(|ident| ident == "test")
    })
}

/// What each module offers by name: the items it defines, the names it re-exports
/// (`pub use other::Name`) with the module they come from, and its glob re-exports.
#[derive(Default)]
struct Exports {
    defined: BTreeMap<Module, BTreeSet<String>>,
    renamed: BTreeMap<Module, BTreeMap<String, Module>>,
    globs: BTreeMap<Module, Vec<Module>>,
}

impl Exports {
    /// The module that really holds `name` when it is reached through `module`, following
    /// re-exports (a reference to `super::Name` re-exported from a sibling is to the sibling).
    fn home(&self, module: &str, name: &str) -> Module {
        let mut current = module.to_string();
        for _ in 0..8 {
            if self.defined.get(&current).is_some_and(|d| d.contains(name)) {
                break;
            }
            if let Some(next) = self.renamed.get(&current).and_then(|r| r.get(name)) {
                current = next.clone();
                continue;
            }
            let globbed = self.globs.get(&current).and_then(|globs| {
                globs
                    .iter()
                    .find(|g| self.defined.get(*g).is_some_and(|d| d.contains(name)))
            });
            match globbed {
                Some(next) => current = next.clone(),
                None => break,
            }
        }
        current
    }
}

/// Collects the module paths one file refers to.
struct References<'a> {
    /// The file's module.
    module: &'a str,
    modules: &'a BTreeMap<Module, PathBuf>,
    /// Where re-exported names come from; `None` in the first pass, which collects them.
    exports: Option<&'a Exports>,
    /// First pass: this file's own items and re-exports.
    own: Exports,
    /// Modules this file's `use`s bring in by name (`use crate::scenario;`), with the
    /// module each stands for.
    bindings: BTreeMap<String, Vec<String>>,
    /// Modules of test code (`#[cfg(test)] mod tests;`), whose files are skipped.
    test_modules: BTreeSet<Module>,
    found: BTreeSet<Module>,
}

impl References<'_> {
    /// Records the module `segments` (as written in this file) lands in, if it is in
    /// this crate.
    fn resolve(&mut self, segments: &[String]) {
        let Some(path) = self.absolute(segments) else {
            return;
        };
        // The longest prefix that is a module (the crate root, "", always is).
        let used = (0..=path.len())
            .rev()
            .find(|&i| self.modules.contains_key(&path[..i].join("::")))
            .unwrap_or(0);
        let mut target = path[..used].join("::");
        if let (Some(exports), Some(name)) = (self.exports, path.get(used)) {
            target = exports.home(&target, name);
        }
        self.found.insert(target);
    }

    /// `segments` as an absolute path of this crate, when it starts in it: through
    /// `crate`, `self`, `super`, a module a `use` brought in, or a child module named
    /// without `self::` (edition 2018 paths).
    fn absolute(&self, segments: &[String]) -> Option<Vec<String>> {
        let own: Vec<String> = if self.module.is_empty() {
            Vec::new()
        } else {
            self.module.split("::").map(str::to_string).collect()
        };
        let (mut base, rest) = match segments.first()?.as_str() {
            "crate" => (Vec::new(), &segments[1..]),
            "self" => (own, &segments[1..]),
            "super" => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                let kept = own.len().saturating_sub(ups);
                (own[..kept].to_vec(), &segments[ups..])
            }
            bound if self.bindings.contains_key(bound) => {
                (self.bindings[bound].clone(), &segments[1..])
            }
            child if self.modules.contains_key(&join(&own, &[child.to_string()])) => {
                (own, segments)
            }
            _ => return None,
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The module `segments` lands in, without following re-exports (first pass).
    fn module_of(&mut self, segments: &[String]) -> Option<Module> {
        self.found.clear();
        self.resolve(segments);
        self.found.pop_first()
    }
}

fn join(base: &[String], more: &[String]) -> String {
    base.iter()
        .chain(more)
        .cloned()
        .collect::<Vec<_>>()
        .join("::")
}

/// Every path a `use` tree names, as segment lists, each with the name it brings in (a
/// glob's path stops at its module, and brings no one name).
fn use_paths(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    match tree {
        syn::UseTree::Path(path) => {
            prefix.push(path.ident.to_string());
            use_paths(&path.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(name) => {
            let mut full = prefix.clone();
            full.push(name.ident.to_string());
            out.push((full, Some(name.ident.to_string())));
        }
        syn::UseTree::Rename(rename) => {
            let mut full = prefix.clone();
            full.push(rename.ident.to_string());
            out.push((full, Some(rename.rename.to_string())));
        }
        syn::UseTree::Glob(_) => out.push((prefix.clone(), None)),
        syn::UseTree::Group(group) => {
            for item in &group.items {
                use_paths(item, prefix, out);
            }
        }
    }
}

/// The serde attributes whose value names a function or module by path.
const SERDE_PATHS: &[&str] = &["with", "serialize_with", "deserialize_with", "default"];

impl<'ast> Visit<'ast> for References<'_> {
    /// `#[serde(with = "super::histogram_text")]` and the like name a module in a string,
    /// which the derive turns into code.
    fn visit_attribute(&mut self, attr: &'ast syn::Attribute) {
        if self.exports.is_none() || !attr.path().is_ident("serde") {
            return;
        }
        let mut named = Vec::new();
        let _ = attr.parse_nested_meta(|meta| {
            if !meta.input.peek(syn::Token![=]) {
                return Ok(());
            }
            let value = meta.value()?;
            if SERDE_PATHS.iter().any(|key| meta.path.is_ident(key)) {
                let text: syn::LitStr = value.parse()?;
                named.push(text.value());
            } else {
                let _: syn::Expr = value.parse()?;
            }
            Ok(())
        });
        for path in named {
            let segments: Vec<String> = path.split("::").map(str::to_string).collect();
            self.resolve(&segments);
        }
    }

    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Trait(t) => &t.attrs,
            syn::Item::Type(t) => &t.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if test_only(attrs) {
            if let syn::Item::Mod(m) = item {
                self.test_modules
                    .insert(join_module(self.module, &m.ident.to_string()));
            }
            return;
        }
        if self.exports.is_none() {
            let name = match item {
                syn::Item::Fn(f) => Some(f.sig.ident.to_string()),
                syn::Item::Struct(s) => Some(s.ident.to_string()),
                syn::Item::Enum(e) => Some(e.ident.to_string()),
                syn::Item::Const(c) => Some(c.ident.to_string()),
                syn::Item::Static(s) => Some(s.ident.to_string()),
                syn::Item::Trait(t) => Some(t.ident.to_string()),
                syn::Item::Type(t) => Some(t.ident.to_string()),
                syn::Item::Macro(m) => m.ident.as_ref().map(ToString::to_string),
                _ => None,
            };
            if let Some(name) = name {
                self.own
                    .defined
                    .entry(self.module.to_string())
                    .or_default()
                    .insert(name);
            }
            if let syn::Item::Use(u) = item {
                self.visit_item_use(u);
            }
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let mut paths = Vec::new();
        use_paths(&item.tree, &mut Vec::new(), &mut paths);
        if self.exports.is_some() {
            for (path, name) in paths {
                self.resolve(&path);
                // A module brought in by name: later paths through it are resolved too.
                let full = self.absolute(&path);
                if let (Some(name), Some(full)) = (name, full) {
                    if self.modules.contains_key(&full.join("::")) {
                        self.bindings.insert(name, full);
                    }
                }
            }
            return;
        }
        if matches!(item.vis, syn::Visibility::Inherited) {
            return;
        }
        let module = self.module.to_string();
        for (path, exported) in paths {
            let Some(from) = self.module_of(&path) else {
                continue;
            };
            match exported {
                Some(name) => {
                    self.own
                        .renamed
                        .entry(module.clone())
                        .or_default()
                        .insert(name, from);
                }
                None => self.own.globs.entry(module.clone()).or_default().push(from),
            }
        }
        self.found.clear();
    }

    /// A macro's arguments, when they read as expressions (`format!`, `assert!`,
    /// `vec!`, ...): syn leaves macro bodies unparsed.
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        syn::visit::visit_macro(self, mac);
        if self.exports.is_none() {
            return;
        }
        use syn::parse::Parser;
        let parser = syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated;
        if let Ok(arguments) = parser.parse2(mac.tokens.clone()) {
            for argument in &arguments {
                self.visit_expr(argument);
            }
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if self.exports.is_none() {
            return;
        }
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some(first) = segments.first() {
            if matches!(first.as_str(), "crate" | "super" | "self")
                || self.bindings.contains_key(first)
            {
                self.resolve(&segments);
            }
        }
        syn::visit::visit_path(self, path);
    }
}

fn join_module(module: &str, child: &str) -> Module {
    if module.is_empty() {
        child.to_string()
    } else {
        format!("{module}::{child}")
    }
}

/// The module files that are test code (`#[cfg(test)] mod tests;` and what is under it),
/// with every other module file parsed.
fn parsed_modules(modules: &BTreeMap<Module, PathBuf>) -> BTreeMap<Module, syn::File> {
    let mut skipped: BTreeSet<Module> = BTreeSet::new();
    let mut parsed = BTreeMap::new();
    // Parents before children, so a test module's files are known before they come up.
    for (module, file) in modules {
        if skipped
            .iter()
            .any(|t| module == t || module.starts_with(&format!("{t}::")))
        {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let syntax = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut references = References {
            module,
            modules,
            exports: None,
            own: Exports::default(),
            bindings: BTreeMap::new(),
            test_modules: BTreeSet::new(),
            found: BTreeSet::new(),
        };
        references.visit_file(&syntax);
        skipped.extend(references.test_modules);
        parsed.insert(module.clone(), syntax);
    }
    parsed
}

/// The module graph of `src/`: module → the modules it refers to.
fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = module_files(&src);
    let parsed = parsed_modules(&modules);
    // First pass: what each module defines and re-exports.
    let mut exports = Exports::default();
    for (module, syntax) in &parsed {
        let mut references = References {
            module,
            modules: &modules,
            exports: None,
            own: Exports::default(),
            bindings: BTreeMap::new(),
            test_modules: BTreeSet::new(),
            found: BTreeSet::new(),
        };
        references.visit_file(syntax);
        exports.defined.extend(references.own.defined);
        exports.renamed.extend(references.own.renamed);
        exports.globs.extend(references.own.globs);
    }
    // Second pass: every reference, to the module that really holds what it names.
    let mut edges = BTreeMap::new();
    for (module, syntax) in &parsed {
        let mut references = References {
            module,
            modules: &modules,
            exports: Some(&exports),
            own: Exports::default(),
            bindings: BTreeMap::new(),
            test_modules: BTreeSet::new(),
            found: BTreeSet::new(),
        };
        references.visit_file(syntax);
        let own_prefix = format!("{module}::");
        let targets: BTreeSet<Module> = references
            .found
            .into_iter()
            .filter(|t| t != module && !(module.is_empty() || t.starts_with(&own_prefix)))
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

/// The strongly connected components of more than one module (Tarjan's algorithm).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<Module>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !tarjan.index.contains_key(v.as_str()) {
            tarjan.visit(v);
        }
    }
    tarjan.found
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or("")
}

fn layer(top: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&top))
}

#[test]
fn the_module_graph_has_no_cycle_and_no_upward_import() {
    let edges = graph();
    let mut breaks: BTreeSet<(String, String)> = BTreeSet::new();
    let mut problems = Vec::new();

    let tops: BTreeSet<&str> = edges.keys().map(|m| top(m)).collect();
    for module in tops.into_iter().filter(|t| !t.is_empty()) {
        if layer(module).is_none() {
            problems.push(format!(
                "src/{module}: a top-level module missing from LAYERS (and from docs/architecture.md's layers): place it"
            ));
        }
    }
    for (from, targets) in &edges {
        for to in targets {
            let (Some(own), Some(theirs)) = (layer(top(from)), layer(top(to))) else {
                continue;
            };
            if theirs > own {
                breaks.insert((from.clone(), to.clone()));
            }
        }
    }
    // Every edge inside a cycle is listed: removing any of them may break it.
    for component in cycles(&edges) {
        let members: BTreeSet<&String> = component.iter().collect();
        for from in &component {
            for to in &edges[from] {
                if members.contains(to) {
                    breaks.insert((from.clone(), to.clone()));
                }
            }
        }
    }
    let allowed: BTreeSet<(String, String)> = STILL_TO_REMOVE
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    for (from, to) in breaks.difference(&allowed) {
        problems.push(format!(
            "{from} -> {to}: an import up the layers or around a cycle"
        ));
    }
    for (from, to) in allowed.difference(&breaks) {
        problems.push(format!(
            "{from} -> {to}: no longer breaks a rule; take it off STILL_TO_REMOVE"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The check itself sees a cycle and an upward import where there is one.
#[test]
fn the_check_finds_cycles_and_layers() {
    let edges: BTreeMap<Module, BTreeSet<Module>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
    .collect();
    assert_eq!(cycles(&edges), vec![vec!["a", "b", "c"]]);
    assert!(layer("scenario") < layer("workload"));
    let graph = graph();
    assert!(
        graph["faults::network"].contains("toxiproxy::control"),
        "{:?}",
        graph["faults::network"]
    );
    assert!(
        !graph.contains_key("scenario::tests"),
        "test modules are left out"
    );
    assert!(
        graph["scenario::warnings"].contains("scenario::units"),
        "a path inside format!(...) is an edge: {:?}",
        graph["scenario::warnings"]
    );
    assert!(
        graph["scenario::lower"].contains("scenario::plan"),
        "a name re-exported by scenario is an edge to the module defining it: {:?}",
        graph["scenario::lower"]
    );
    assert!(
        graph["metrics::latency"].contains("metrics::histogram_text"),
        "a serde(with) path is an edge: {:?}",
        graph["metrics::latency"]
    );
}

/// docs/architecture.md's table of layers is `LAYERS`.
#[test]
fn the_documented_layers_are_the_checked_ones() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .unwrap();
    let section = docs
        .split("## Layers")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Layers section");
    let documented: Vec<Vec<String>> = section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells.len() >= 3 && cells[1].parse::<usize>().is_ok()).then(|| {
                cells[2]
                    .split(',')
                    .map(|m| m.trim().trim_matches('`').to_string())
                    .collect()
            })
        })
        .collect();
    let checked: Vec<Vec<String>> = LAYERS
        .iter()
        .map(|layer| layer.iter().map(|m| m.to_string()).collect())
        .collect();
    assert_eq!(documented, checked);
}
