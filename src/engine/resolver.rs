//! `import "NAME"` resolution for playbooks: `./stdlib/`, the user's config dir, then the
//! modules embedded in the binary.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

use crate::playbook::catalog;
use crate::run::Run;

/// Resolves stdlib modules and remembers their text for error messages.
pub struct StdlibResolver {
    run: Arc<Run>,
    cache: Mutex<HashMap<String, Shared<Module>>>,
}

impl StdlibResolver {
    pub fn new(run: Arc<Run>) -> Self {
        StdlibResolver {
            run,
            cache: Mutex::default(),
        }
    }
}

impl ModuleResolver for StdlibResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        if let Some(module) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
        {
            return Ok(module.clone());
        }
        let source = match catalog::module(path) {
            Some(Ok(source)) => source,
            Some(Err(e)) => {
                return Err(
                    EvalAltResult::ErrorInModule(path.into(), e.to_string().into(), pos).into(),
                )
            }
            None => return Err(EvalAltResult::ErrorModuleNotFound(path.into(), pos).into()),
        };
        let name = source.display_name("stdlib");
        self.run.remember_source(&name, &source.text);
        let mut ast = engine
            .compile(&source.text)
            .map_err(|e| EvalAltResult::ErrorInModule(name.clone(), e.into(), pos))?;
        ast.set_source(name.as_str());
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|e| EvalAltResult::ErrorInModule(name.clone(), e, pos))?;
        let module: Shared<Module> = module.into();
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_string(), module.clone());
        Ok(module)
    }
}
