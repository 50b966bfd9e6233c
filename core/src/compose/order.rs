//! Composition order: a topological sort on `dependency_spec`, so a dependency always lies
//! below the modules that build on it, with ties broken so the result never depends on the
//! order layers were given in: subscription before config (config modules are override
//! modules and must land on top), then category rank (firmware first), then name.
//!
//! A missing dependency is reported and otherwise ignored; a cycle is reported and broken at
//! the lowest-ranked module still waiting, so owners can still be shown for a blocked
//! composition.

use super::Layer;
use crate::{
    diagnostics::{Code, Finding},
    manifest::{Category, ModuleName, Variety},
};
use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque},
};

type Key<'a> = (Variety, Category, &'a ModuleName);

fn key<'a>(l: &'a Layer) -> Key<'a> {
    let id = &l.manifest.identity;
    (id.variety, id.category, &id.name)
}

/// Returns indices into `layers` (unique names, sorted by name), lowest first.
pub(super) fn order(layers: &[&Layer], findings: &mut Vec<Finding>) -> Vec<usize> {
    let deps = resolve_deps(layers, findings);
    report_cycles(layers, &deps, findings);

    let n = layers.len();
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<(Key, usize)>> = (0..n)
        .filter(|&i| waiting[i] == 0)
        .map(|i| Reverse((key(layers[i]), i)))
        .collect();
    let mut placed = vec![false; n];
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let i = match ready.pop() {
            Some(Reverse((_, i))) => i,
            // Only a cycle leaves modules waiting with nothing ready: release the
            // lowest-ranked of them (already reported as DEP_CYCLE).
            None => match (0..n)
                .filter(|&i| !placed[i])
                .min_by_key(|&i| key(layers[i]))
            {
                Some(i) => i,
                None => break,
            },
        };
        if placed[i] {
            continue;
        }
        placed[i] = true;
        out.push(i);
        for &j in &dependents[i] {
            waiting[j] = waiting[j].saturating_sub(1);
            if waiting[j] == 0 && !placed[j] {
                ready.push(Reverse((key(layers[j]), j)));
            }
        }
    }
    out
}

/// Each layer's dependencies as sorted, distinct indices (so, by name); missing ones become
/// `DEP_MISSING`.
fn resolve_deps(layers: &[&Layer], findings: &mut Vec<Finding>) -> Vec<Vec<usize>> {
    let index: BTreeMap<&ModuleName, usize> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| (&l.manifest.identity.name, i))
        .collect();
    layers
        .iter()
        .map(|l| {
            let me = &l.manifest.identity.name;
            let mut ds = BTreeSet::new();
            for (k, d) in l.manifest.dependency_spec.iter().enumerate() {
                match index.get(&d.name) {
                    Some(&i) => {
                        ds.insert(i);
                    }
                    None => findings.push(
                        Finding::new(
                            Code::DepMissing,
                            me.as_str(),
                            format!(
                                "{me} depends on {dep}, which is not among the composed \
                                 modules; assign {dep} to the template too, or remove the \
                                 dependency",
                                dep = d.name
                            ),
                        )
                        .field(format!("dependency_spec[{k}]")),
                    ),
                }
            }
            ds.into_iter().collect()
        })
        .collect()
}

/// One `DEP_CYCLE` per strongly connected component that holds a cycle, naming a shortest
/// cycle through its first module by name.
fn report_cycles(layers: &[&Layer], deps: &[Vec<usize>], findings: &mut Vec<Finding>) {
    for scc in components(deps) {
        let start = scc[0];
        let cyclic = scc.len() > 1 || deps[start].contains(&start);
        if !cyclic {
            continue;
        }
        let cycle = shortest_cycle(start, deps, &scc);
        let names: Vec<&str> = cycle
            .iter()
            .chain(std::iter::once(&start))
            .map(|&i| layers[i].manifest.identity.name.as_str())
            .collect();
        let mut finding = Finding::new(
            Code::DepCycle,
            names[0],
            format!(
                "dependency cycle: {} (each depends on the next); no order puts every \
                 dependency first, so remove one of these dependencies",
                names.join(" → ")
            ),
        )
        .field("dependency_spec");
        if scc.len() > cycle.len() {
            let all: Vec<&str> = scc
                .iter()
                .map(|&i| layers[i].manifest.identity.name.as_str())
                .collect();
            finding.message += &format!(" (the cycle involves {})", super::and_list(&all));
        }
        findings.push(finding);
    }
}

/// Breadth-first from `start` along dependency edges inside `scc`; returns the nodes of a
/// shortest path from `start` back to it, `start` first.
fn shortest_cycle(start: usize, deps: &[Vec<usize>], scc: &[usize]) -> Vec<usize> {
    let mut came_from: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &d in &deps[v] {
            if d == start {
                let mut path = vec![v];
                let mut at = v;
                while let Some(&p) = came_from.get(&at) {
                    path.push(p);
                    at = p;
                }
                path.reverse();
                return path;
            }
            if scc.binary_search(&d).is_ok() && d != start && !came_from.contains_key(&d) {
                came_from.insert(d, v);
                queue.push_back(d);
            }
        }
    }
    vec![start]
}

/// Strongly connected components (Kosaraju, iterative so no input can exhaust the stack),
/// each sorted, in no particular order.
fn components(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = deps.len();
    let mut finished = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for root in 0..n {
        if seen[root] {
            continue;
        }
        seen[root] = true;
        let mut stack = vec![(root, 0usize)];
        while let Some(top) = stack.last_mut() {
            let (v, next) = *top;
            if let Some(&d) = deps[v].get(next) {
                top.1 += 1;
                if !seen[d] {
                    seen[d] = true;
                    stack.push((d, 0));
                }
            } else {
                finished.push(v);
                stack.pop();
            }
        }
    }
    let mut reverse: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (v, ds) in deps.iter().enumerate() {
        for &d in ds {
            reverse[d].push(v);
        }
    }
    let mut assigned = vec![false; n];
    let mut out = Vec::new();
    for &root in finished.iter().rev() {
        if assigned[root] {
            continue;
        }
        assigned[root] = true;
        let mut scc = vec![root];
        let mut stack = vec![root];
        while let Some(v) = stack.pop() {
            for &u in &reverse[v] {
                if !assigned[u] {
                    assigned[u] = true;
                    scc.push(u);
                    stack.push(u);
                }
            }
        }
        scc.sort_unstable();
        out.push(scc);
    }
    out
}
