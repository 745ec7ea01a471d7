//! Types and prototypes written as C declarations.
//!
//! A declaration is built inside out, as C declarators nest: a pointer prefixes `*` to the
//! declarator, an array appends `[N]`, a function prototype appends its parameter list, and a
//! pointer to an array or function gets parentheses. Qualifiers of a base type go in front
//! (`const char *p`), of a pointer after its `*` (`char *const p`). Type tags (`__user`) are
//! left out, as `bpftrace -lv` leaves them out. Malformed (cyclic) BTF ends in `?`.

use super::types::{Kind, TypeId};
use super::{Btf, FuncProto};

/// Nesting deeper than any real declaration: cut there.
const MAX_DEPTH: usize = 32;

impl Btf {
    /// `id` as a C type name, e.g. `const char *`, `struct open_how *`, `int[4]`.
    pub fn type_name(&self, id: TypeId) -> String {
        self.declaration(id, "")
    }

    /// A declaration of `name` with type `id`, e.g. `const char *filename`.
    pub fn declaration(&self, id: TypeId, name: &str) -> String {
        self.decl(id, name.to_owned(), 0)
    }

    /// The prototype as C: `long do_sys_openat2(int dfd, const char *filename, struct
    /// open_how *how)`.
    pub fn render_prototype(&self, proto: &FuncProto) -> String {
        let params = self.params(&proto.params, 0);
        self.decl(proto.ret, format!("{}({params})", proto.name), 0)
    }

    fn params(&self, params: &[super::Param], depth: usize) -> String {
        if params.is_empty() {
            return "void".to_owned();
        }
        params
            .iter()
            .map(|p| {
                if p.ty == 0 && p.name.is_empty() {
                    "...".to_owned()
                } else {
                    self.decl(p.ty, p.name.clone(), depth + 1)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn decl(&self, id: TypeId, inner: String, depth: usize) -> String {
        let Some(t) = self.get(id) else {
            return join(&format!("<bad type {id}>"), &inner);
        };
        if depth > MAX_DEPTH {
            return join("?", &inner);
        }
        let named = |prefix: &str| {
            let name = if t.name.is_empty() { "(anon)" } else { &t.name };
            join(&format!("{prefix}{name}"), &inner)
        };
        match &t.kind {
            Kind::Void => join("void", &inner),
            Kind::Int { .. } | Kind::Float { .. } | Kind::Typedef { .. } => named(""),
            Kind::Struct { .. } => named("struct "),
            Kind::Union { .. } => named("union "),
            Kind::Enum { .. } => named("enum "),
            Kind::Fwd { union_: false } => named("struct "),
            Kind::Fwd { union_: true } => named("union "),
            Kind::Ptr { target } => {
                let mut d = format!("*{inner}");
                if self.needs_parens(*target) {
                    d = format!("({d})");
                }
                self.decl(*target, d, depth + 1)
            }
            Kind::Array { elem, len, .. } => self.decl(*elem, format!("{inner}[{len}]"), depth + 1),
            Kind::FuncProto { ret, params } => {
                let params = self.params(params, depth);
                self.decl(*ret, format!("{inner}({params})"), depth + 1)
            }
            Kind::Const { target } => self.qualified("const", *target, inner, depth),
            Kind::Volatile { target } => self.qualified("volatile", *target, inner, depth),
            Kind::Restrict { target } => self.qualified("restrict", *target, inner, depth),
            Kind::TypeTag { target } | Kind::DeclTag { target, .. } => {
                self.decl(*target, inner, depth + 1)
            }
            Kind::Func { proto, .. } => self.decl(*proto, t.name.clone(), depth + 1),
            Kind::Var { ty, .. } => self.decl(*ty, t.name.clone(), depth + 1),
            Kind::Datasec { .. } => named("section "),
        }
    }

    /// `const`/`volatile`/`restrict` on `target`: in front of a base type, after a pointer's
    /// `*`.
    fn qualified(&self, q: &str, target: TypeId, inner: String, depth: usize) -> String {
        let pointer_like = matches!(
            self.get(target).map(|t| &t.kind),
            Some(Kind::Ptr { .. } | Kind::Array { .. } | Kind::FuncProto { .. })
        );
        if pointer_like {
            self.decl(target, join(q, &inner), depth + 1)
        } else {
            format!("{q} {}", self.decl(target, inner, depth + 1))
        }
    }

    /// Does a pointer to `id` need parentheses (`(*p)[4]`, `(*f)(int)`)?
    fn needs_parens(&self, id: TypeId) -> bool {
        matches!(
            self.get(id).map(|t| &t.kind),
            Some(Kind::Array { .. } | Kind::FuncProto { .. })
        )
    }
}

/// `base declarator`, without a space before `*`-less empty declarators.
fn join(base: &str, inner: &str) -> String {
    if inner.is_empty() {
        base.to_owned()
    } else if inner.starts_with('[') || inner.starts_with('(') && !inner.starts_with("(*") {
        format!("{base}{inner}")
    } else {
        format!("{base} {inner}")
    }
}
