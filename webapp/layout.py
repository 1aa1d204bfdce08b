"""The page: compose the tabs (built in annotate/views/classes/images/export) and wire their events to the
callbacks. No logic here beyond which callback answers which event."""

from __future__ import annotations

import gradio as gr

from webapp import annotate, classes, export, images, views
from webapp import callbacks_annotate as cba
from webapp import callbacks_classes as cbc
from webapp import callbacks_data as cbd
from webapp import callbacks_export as cbe
from webapp import callbacks_page as cbp
from webapp import callbacks_views as cbv
from webapp.callbacks_classes import DROP, REASSIGN
from webapp.context import AppContext, Session
from webapp.ui import UI, bind

TICK_SECONDS = 1.5  # the status timer, active only while features are computed or a fit runs

# Outputs of everything that (re)opens an image in the annotation panel.
RESOLUTION_OUT = ["header", "resolution", "resolution_md"]
SHOW = ["state", "canvas", "title", "info", "split", "current_image", "gallery", "gallery_range"]
VIEW_IN = ["state", "view_mode", "opacity", "k"]
VIEW_OUT = ["state", "view_img", "view_note"]
CLASS_OUT = SHOW + [
    "classes_table",
    "class_pick",
    "class_name",
    "class_colour",
    "reassign_to",
    "new_class_name",
]
TICK_OUT = ["status", "state", "view_img", "view_note", "info", "gallery", "gallery_range", "timer"]


def confirm_js(question: str) -> str:
    """Runs in the page before the event: a refused confirmation stops the event (the error is swallowed)."""
    q = question.replace("\\", "\\\\").replace('"', '\\"')
    return f'(...args) => {{ if (!window.confirm("{q}")) throw new Error("cancelled"); return args; }}'


# The confirmation says what goes with the class: its labelled pixels, from the Classes table (counted when
# the tab was shown).
DELETE_CLASS_JS = f"""(...args) => {{
  const [, pick, mode] = args;
  const row = document.querySelector(`#classes-table tr[data-class-id="${{pick}}"]`);
  const px = row ? +row.dataset.pixels : 0;
  let q = `Delete the class ${{row ? row.dataset.name : ''}}?`;
  if (px && mode === "{DROP}") q += ` Its ${{px.toLocaleString()}} labelled pixels go with it.`;
  else if (px && mode === "{REASSIGN}") q += ` Its ${{px.toLocaleString()}} labelled pixels move to the class chosen.`;
  else if (px) q += ` It has ${{px.toLocaleString()}} labelled pixels: choose what happens to them first.`;
  if (!window.confirm(q)) throw new Error("cancelled");
  return args;
}}"""


def header(ctx: AppContext, ui: UI) -> None:
    ui.add(header=gr.Markdown(cbd.header_text(ctx), elem_id="header"))
    ui.add(banner=gr.Markdown(ctx.banner, elem_id="banner", visible=bool(ctx.banner)))
    ui.add(status=gr.Markdown("", elem_id="status-line"))


def build(ctx: AppContext) -> tuple[gr.Blocks, UI]:
    ui = UI()
    # delete_cache: the images Gradio writes for the page (overlays, thumbnails) go to the upload folder in
    # the data folder; files older than an hour are removed every 10 minutes, so it stays bounded.
    with gr.Blocks(title=f"probeseg · {ctx.project_name}", fill_width=True, delete_cache=(600, 3600)) as demo:
        ui.add(state=gr.State(Session()))
        header(ctx, ui)
        with gr.Tabs():
            with gr.Tab("Annotate", id="annotate"):
                with gr.Row():
                    with gr.Column(scale=3):
                        annotate.build_tools(ui)
                        annotate.build_canvas(ui)
                    with gr.Column(scale=2):
                        annotate.build_suggestions(ui)
                        views.build_views(ui)
                annotate.build_gallery(ui)
            with gr.Tab("Images", id="images"):
                images.build_images(ui, ctx.allow_server_paths)
            with gr.Tab("Classes", id="classes") as classes_tab:
                classes.build_classes(ui)
            with gr.Tab("Evaluation", id="evaluation") as eval_tab:
                export.build_evaluation(ui)
            with gr.Tab("Export", id="export"):
                export.build_export(ui, cbe.download_links(ctx, False))
        ui.add(timer=gr.Timer(TICK_SECONDS, active=False))
        wire(ctx, ui, demo, eval_tab, classes_tab)
    return demo, ui


def _on(ui: UI, ctx: AppContext, event, fn, inputs: list[str], outputs: list[str], view: bool = False, **kw):
    """Listen to `event` with callback `fn` (inputs[0] must be "state"); with view=True, redraw the view after."""
    outputs = list(dict.fromkeys(outputs))  # an output named twice (e.g. via SHOW and gallery_out) once
    dep = event(bind(ctx, fn, outputs), ui.pick(inputs), ui.pick(outputs), **kw)
    if view:
        dep = dep.then(
            bind(ctx, cbv.render_view, VIEW_OUT), ui.pick(VIEW_IN), ui.pick(VIEW_OUT), show_progress="hidden"
        )
    return dep


def wire(ctx: AppContext, ui: UI, demo: gr.Blocks, eval_tab, classes_tab) -> None:
    on = lambda *a, **k: _on(ui, ctx, *a, **k)  # noqa: E731
    gallery_out = ["state", "gallery", "gallery_range"]

    load_out = list(dict.fromkeys(CLASS_OUT + gallery_out + ["status", "timer", *RESOLUTION_OUT]))

    def page_load(sess: Session, sort: str, request: gr.Request):
        return bind(ctx, lambda c, s, so: cbp.page_load(c, s, so, request), load_out)(sess, sort)

    demo.load(page_load, ui.pick(["state", "sort"]), ui.pick(load_out)).then(
        bind(ctx, cbv.render_view, VIEW_OUT), ui.pick(VIEW_IN), ui.pick(VIEW_OUT), show_progress="hidden"
    )

    # annotation: edits go from the canvas to the REST API; the canvas follows the project's event stream
    # and fires "refresh" on a final head, features, images or classes
    redraw = bind(ctx, cbv.tick, TICK_OUT)
    ui.canvas.refresh(
        redraw,
        ui.pick(VIEW_IN + ["sort"]),
        ui.pick(TICK_OUT),
        show_progress="hidden",
        trigger_mode="always_last",
    )
    on(ui.train_btn.click, cba.train, ["state"], ["state", "status"], view=True).then(
        bind(ctx, cbv.gallery, gallery_out),
        ui.pick(["state", "sort"]),
        ui.pick(gallery_out),
        show_progress="hidden",
    )
    # Refine goes through the canvas (an edit of its own, sent as this tab's, so the tab's Ctrl+Z undoes it)
    ui.refine_btn.click(
        None,
        ui.pick(["refine_threshold"]),
        None,
        js="(t) => { window.__probeseg.refine(t); return []; }",
    )
    # every press counts (Gradio drops a click while the last one runs, by default): p p goes back two
    for button, delta in ((ui.prev_btn, -1), (ui.next_btn, +1)):
        on(
            button.click,
            lambda c, s, d=delta: cba.step(c, s, d),
            ["state"],
            SHOW,
            view=True,
            trigger_mode="multiple",
        )
    on(ui.uncertain_btn.click, cba.next_uncertain, ["state"], SHOW, view=True)
    on(ui.suggest_btn.click, cba.suggest, ["state"], ["state", "suggestions"])

    def suggestion_select(sess: Session, evt: gr.SelectData):
        return bind(ctx, lambda c, s: cba.pick_suggestion(c, s, evt.index), SHOW)(sess)

    def canvas_navigated(sess: Session, evt: gr.EventData):
        data = getattr(evt, "_data", None) or {}
        image_id, seq, step = data.get("image"), data.get("seq"), data.get("step", 0)
        if not (isinstance(image_id, int) and isinstance(seq, int) and isinstance(step, int)):
            return bind(ctx, lambda c, s: {}, SHOW)(sess)  # (a malformed event: nothing to follow)
        return bind(ctx, lambda c, s: cba.navigated(c, s, image_id, seq, step), SHOW)(sess)

    # the canvas paged by itself (p / n within its window; it reports where a burst of presses ended)
    ui.canvas.navigated(
        canvas_navigated,
        ui.pick(["state"]),
        ui.pick(SHOW),
        trigger_mode="multiple",
        show_progress="hidden",
    ).then(bind(ctx, cbv.render_view, VIEW_OUT), ui.pick(VIEW_IN), ui.pick(VIEW_OUT), show_progress="hidden")
    ui.suggestions.select(suggestion_select, ui.pick(["state"]), ui.pick(SHOW)).then(
        bind(ctx, cbv.render_view, VIEW_OUT), ui.pick(VIEW_IN), ui.pick(VIEW_OUT), show_progress="hidden"
    )

    def gallery_select(sess: Session, evt: gr.SelectData):
        return bind(ctx, lambda c, s: cba.pick_gallery(c, s, evt.index), SHOW)(sess)

    ui.gallery.select(gallery_select, ui.pick(["state"]), ui.pick(SHOW)).then(
        bind(ctx, cbv.render_view, VIEW_OUT), ui.pick(VIEW_IN), ui.pick(VIEW_OUT), show_progress="hidden"
    )
    on(ui.sort.input, cbv.resort, ["state", "sort"], gallery_out)
    on(ui.page_prev_btn.click, lambda c, s: cbv.turn_page(c, s, -1), ["state"], gallery_out)
    on(ui.page_next_btn.click, lambda c, s: cbv.turn_page(c, s, +1), ["state"], gallery_out)

    # views
    for event in (ui.view_mode.change, ui.opacity.release, ui.k.release):
        on(event, cbv.render_view, VIEW_IN, VIEW_OUT, show_progress="hidden")
    ui.timer.tick(
        bind(ctx, cbv.tick, TICK_OUT, blocking=False),
        ui.pick(VIEW_IN + ["sort"]),
        ui.pick(TICK_OUT),
        show_progress="hidden",
        queue=False,
    )

    # images
    bundle_out = ["bundle_box", "bundle_md", "bundle_name", "bundle_merge_btn"]
    import_out = (
        CLASS_OUT + gallery_out + ["import_report", "upload_files", "upload_dir", "timer", *bundle_out]
    )
    tiff_in = ["tiff_plane", "tiff_channels", "tiff_low", "tiff_high"]
    on(ui.upload_files.upload, cbd.upload, ["state", "upload_files", "sort", *tiff_in], import_out, view=True)
    on(ui.upload_dir.upload, cbd.upload, ["state", "upload_dir", "sort", *tiff_in], import_out, view=True)
    on(ui.samples_btn.click, cbd.load_samples, ["state", "sort"], import_out, view=True)
    for button, merge in ((ui.bundle_new_btn, False), (ui.bundle_merge_btn, True)):
        on(
            button.click,
            lambda c, s, name, zero, sort, merge=merge: cbd.import_bundle(c, s, name, merge, sort, zero),
            ["state", "bundle_name", "bundle_zero", "sort"],
            import_out,
            view=True,
        )
    on(
        ui.import_folder_btn.click,
        cbd.import_folder,
        ["state", "server_folder", "sort", *tiff_in],
        import_out,
        view=True,
    )
    on(
        ui.import_voc_btn.click,
        cbd.import_voc,
        ["state", "server_folder", "voc_labels", "sort", "voc_zero_unlabelled"],
        import_out,
        view=True,
    )
    on(
        ui.import_coco_btn.click,
        cbd.import_coco,
        ["state", "server_folder", "coco_file", "coco_as_gt", "sort"],
        import_out,
        view=True,
    )
    on(ui.split.input, cbd.set_split, ["state", "split"], ["title"])
    on(
        ui.resolution_btn.click,
        cbd.set_resolution,
        ["state", "resolution"],
        [*RESOLUTION_OUT, "timer", *SHOW],
    )
    on(
        ui.delete_image_btn.click,
        cbd.delete_image,
        ["state", "sort"],
        SHOW + gallery_out,
        view=True,
        js=confirm_js(
            "Delete the current image (named above the button) and all its labels? This cannot be undone."
        ),
    )

    # classes
    on(ui.class_pick.input, cbc.pick, ["state", "class_pick"], ["class_name", "class_colour"])
    # after adding a class the focus leaves the name box, so the next key ("1") picks a class, not types
    for event in (ui.quick_add_btn.click, ui.quick_class_name.submit):
        on(event, cbc.quick_add, ["state", "quick_class_name"], CLASS_OUT + ["quick_class_name"]).then(
            None, js="() => { if (document.activeElement) document.activeElement.blur(); }"
        )
    on(
        ui.add_btn.click,
        cbc.add,
        ["state", "new_class_name", "new_class_colour", "new_use_colour"],
        CLASS_OUT,
    )
    on(
        ui.new_class_name.submit,
        cbc.add,
        ["state", "new_class_name", "new_class_colour", "new_use_colour"],
        CLASS_OUT,
    )
    on(ui.rename_btn.click, cbc.rename, ["state", "class_pick", "class_name"], CLASS_OUT)
    on(ui.recolour_btn.click, cbc.recolour, ["state", "class_pick", "class_colour"], CLASS_OUT, view=True)
    on(ui.up_btn.click, lambda c, s, v: cbc.move(c, s, v, -1), ["state", "class_pick"], CLASS_OUT, view=True)
    on(
        ui.down_btn.click,
        lambda c, s, v: cbc.move(c, s, v, +1),
        ["state", "class_pick"],
        CLASS_OUT,
        view=True,
    )
    on(
        ui.delete_btn.click,
        cbc.delete,
        ["state", "class_pick", "delete_mode", "reassign_to"],
        CLASS_OUT,
        view=True,
        js=DELETE_CLASS_JS,
    )

    # evaluation and export
    eval_out = ["eval_md", "eval_plot"]
    on(ui.eval_refresh.click, cbe.evaluation, ["state"], eval_out)
    on(eval_tab.select, cbe.evaluation, ["state"], eval_out)
    # strokes reach the server through the REST API, not through these callbacks: count them when shown
    on(classes_tab.select, cbc.refresh_table, ["state"], ["classes_table"], show_progress="hidden")
    export_out = ["export_files", "export_msg"]
    on(ui.export_head_btn.click, cbe.export_head, ["state"], export_out)
    on(ui.export_pred.change, cbe.export_links, ["state", "export_pred"], ["export_links"])
