"""Page-wide CSS and the keyboard shortcuts (keys 1-9 pick a class; n / p / u navigate)."""

CSS = """
#banner { background: #fff4ce; border: 2px solid #d9a400; border-radius: 8px; padding: 4px 14px; }
#banner p { margin: 4px 0; }
.muted { color: var(--body-text-color-subdued); font-size: 0.92em; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 3px; margin: 0 4px -1px 8px;
          border: 1px solid rgba(128,128,128,.6); }
.swatch.big { width: 18px; height: 18px; margin-right: 8px; vertical-align: middle; }
table.classes td, table.classes th { padding: 4px 10px; }
#active-class label { transition: none; }
#status-line { font-size: 0.92em; }
#status-line p { margin: 2px 0; }
/* The editor's own history, eraser, size and layer controls are replaced by ours (stored history, Erase
   mode that erases stored labels, a brush size kept across class switches). */
#editor button[aria-label='Undo'], #editor button[aria-label='Redo'], #editor button[aria-label='Clear canvas'],
#editor button[aria-label='Erase'], #editor button[aria-label='Brush Size'],
#editor .layer-wrap, #editor button.layer-title-button { display: none !important; }
#gallery .caption-label { font-size: 11px; white-space: normal; line-height: 1.2; }
#view-note { min-height: 2.4em; }
#header h2 { margin: 0; }
#class-style { display: none !important; }  /* only carries the per-class <style> rules */
#action-row { align-items: center; }
#title p { margin: 2px 0; }
"""

SHORTCUTS_JS = """
<script>
(() => {
  if (window.__probesegKeys) return;
  window.__probesegKeys = true;
  const typing = (el) => el && (el.isContentEditable || el.tagName === 'TEXTAREA' ||
      (el.tagName === 'INPUT' && !['radio', 'checkbox', 'range', 'button'].includes(el.type)));
  const click = (sel) => { const el = document.querySelector(sel); if (el) { el.click(); return true; } return false; };
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    let done = false;
    if (e.key >= '1' && e.key <= '9') {
      const opts = document.querySelectorAll('#active-class label input');
      const opt = opts[parseInt(e.key, 10) - 1];
      if (opt) { opt.click(); done = true; }
    } else if (e.key === 'n') { done = click('#next-btn'); }
    else if (e.key === 'p') { done = click('#prev-btn'); }
    else if (e.key === 'u') { done = click('#uncertain-btn'); }
    if (done) e.preventDefault();
  }, true);
})();
</script>
"""
